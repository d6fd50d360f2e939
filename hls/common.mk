# hls/common.mk -- shared rules of the HLS C++ kernels: `csim` (g++ + the ap_types headers inside hls4ml) and
# `csynth` (Vitis HLS, only where vitis_hls is on PATH).  Included by hls/Makefile, which sets KERNELS.
#
# The array (rows, cols, widths, max_k, part, clock) is one sanitas ArrayConfig: CONFIG=FILE names a sanitas Config
# (YAML/JSON) whose `array` section is used; without CONFIG the ArrayConfig defaults apply.  PART and CLOCK_NS
# (csynth) are read from it unless given on the command line.
#
# Per kernel K (hls/tests/K/test.cpp, a thin top + main() returning its error count):
#   vectors-K  $(PYTHON) -m sanitas.hls.csim vectors --kernel K --out $(BUILD_DIR)/tests/K [--config $(CONFIG)]
#              (golden vectors + faults + the generated sanitas_test_config.h)
#   csim-K     vectors-K, compile $(BUILD_DIR)/tests/K/csim with $(CXX), run it on the vectors; a mismatch
#              makes the binary, hence make, exit non-zero
#   csynth-K   Vitis HLS synthesis of K_top into $(BUILD_DIR)/csynth/K
# Per network N (NETS; python/sanitas/hls/netcsim.py):
#   csim-net-N $(PYTHON) -m sanitas.hls.netcsim --net N --out $(BUILD_DIR)/nets/N: generated sanitas_net.cpp, golden
#              vectors of the digits test split, g++ testbench (-DSANITAS_TB), run; non-zero exit on any mismatch
#   csynth-net-N  Vitis HLS synthesis of sanitas_top of N into $(BUILD_DIR)/csynth/net-N
# Everything generated goes under $(BUILD_DIR) (default <repo>/build/hls), never into the source tree.

HLS_DIR   := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
ROOT      := $(abspath $(HLS_DIR)/..)
PYTHON    ?= $(if $(wildcard $(ROOT)/.venv/bin/python),$(ROOT)/.venv/bin/python,python3)
BUILD_DIR ?= $(ROOT)/build/hls
CXXSTD    ?= c++14
# -Wno-(maybe-)uninitialized: false positives inside ap_private (the ap_types headers), not in sanitas code.
CXXFLAGS  ?= -std=$(CXXSTD) -O2 -Wall -Wextra -Wno-unknown-pragmas -Wno-unused-label \
             -Wno-maybe-uninitialized -Wno-uninitialized
CONFIG    ?=
CONFIG_ARG = $(if $(CONFIG),--config $(abspath $(CONFIG)))
# Deferred (`?=` is recursive): evaluated only by the csynth recipe, so csim never pays for them.  $(shell) does
# not see exported variables before GNU make 4.4, hence the explicit PYTHONPATH.
PART      ?= $(shell PYTHONPATH="$(PYTHONPATH)" $(PYTHON) -m sanitas.hls.csim param part $(CONFIG_ARG))
CLOCK_NS  ?= $(shell PYTHONPATH="$(PYTHONPATH)" $(PYTHON) -m sanitas.hls.csim param clock_ns $(CONFIG_ARG))
HEADERS   := $(wildcard $(HLS_DIR)/include/sanitas/*.h)

# sanitas must be importable by $(PYTHON) even without the editable install.
export PYTHONPATH := $(ROOT)/python$(if $(PYTHONPATH),:$(PYTHONPATH),)

.PHONY: csim csynth clean-hls ap-include $(addprefix vectors-,$(KERNELS)) $(addprefix csim-,$(KERNELS)) \
        $(addprefix csynth-,$(KERNELS)) $(addprefix csim-net-,$(NETS)) $(addprefix csynth-net-,$(NETS))
.SECONDARY:

csim: $(addprefix csim-,$(KERNELS)) $(addprefix csim-net-,$(NETS))

CKPT_ARG = $(if $(CHECKPOINTS),--checkpoints $(abspath $(CHECKPOINTS)))
SCHEME_ARG = $(if $(SCHEME),--scheme $(SCHEME))
$(addprefix csim-net-,$(NETS)): csim-net-%:
	$(PYTHON) -m sanitas.hls.netcsim --net $* --out $(BUILD_DIR)/nets/$*$(if $(SCHEME),-$(subst +,_,$(subst :,_,$(SCHEME)))) $(CONFIG_ARG) $(CKPT_ARG) $(SCHEME_ARG)

ap-include:
	@$(PYTHON) -m sanitas.hls.csim include

$(addprefix vectors-,$(KERNELS)): vectors-%:
	@$(PYTHON) -m sanitas.hls.csim vectors --kernel $* --out $(BUILD_DIR)/tests/$* $(CONFIG_ARG)

# The binary depends on the generated config header, so it is (re)made in a second make pass after vectors-%.
$(addprefix csim-,$(KERNELS)): csim-%: vectors-%
	@$(MAKE) --no-print-directory $(BUILD_DIR)/tests/$*/csim
	$(BUILD_DIR)/tests/$*/csim $(BUILD_DIR)/tests/$*

$(BUILD_DIR)/tests/%/csim: $(HLS_DIR)/tests/%/test.cpp $(BUILD_DIR)/tests/%/sanitas_test_config.h $(HEADERS)
	@inc="$$($(PYTHON) -m sanitas.hls.csim include)" && echo "CXX $@" && \
	$(CXX) $(CXXFLAGS) -I$(HLS_DIR)/include -I$(@D) -isystem "$$inc" $< -o $@

csynth:
	@command -v vitis_hls >/dev/null 2>&1 || { echo "csynth needs Vitis HLS (vitis_hls not on PATH)" >&2; exit 2; }
	@$(MAKE) --no-print-directory $(addprefix csynth-,$(KERNELS)) $(addprefix csynth-net-,$(NETS))

$(addprefix csynth-net-,$(NETS)): csynth-net-%: csim-net-%
	@mkdir -p $(BUILD_DIR)/csynth/net-$*
	@printf '%s\n' 'open_project -reset sanitas_top_$*' 'set_top sanitas_top' \
	  'add_files $(BUILD_DIR)/nets/$*/sanitas_net.cpp -cflags "-std=c++14 -I$(HLS_DIR)/include -I$(BUILD_DIR)/nets/$*"' \
	  'open_solution -reset solution1' 'set_part $(PART)' 'create_clock -period $(CLOCK_NS)' \
	  'config_export -vendor sanitas.org -library hls -ipname sanitas_top -version 1.0' \
	  'csynth_design' 'export_design -format ip_catalog' 'exit' > $(BUILD_DIR)/csynth/net-$*/csynth.tcl
	cd $(BUILD_DIR)/csynth/net-$* && vitis_hls -f csynth.tcl

$(addprefix csynth-,$(KERNELS)): csynth-%: vectors-%
	@mkdir -p $(BUILD_DIR)/csynth/$*
	@printf '%s\n' 'open_project -reset $*' 'set_top $*_top' \
	  'add_files $(HLS_DIR)/tests/$*/test.cpp -cflags "-std=c++14 -I$(HLS_DIR)/include -I$(BUILD_DIR)/tests/$*"' \
	  'open_solution -reset solution1' 'set_part $(PART)' 'create_clock -period $(CLOCK_NS)' \
	  'csynth_design' 'exit' > $(BUILD_DIR)/csynth/$*/csynth.tcl
	cd $(BUILD_DIR)/csynth/$* && vitis_hls -f csynth.tcl

clean-hls:
	rm -rf $(BUILD_DIR)
