# boards/common.mk -- the PYNQ overlay of one board: `make -C boards/<board> overlay`.  Included by each
# boards/<board>/Makefile (the folder name is the board).
#
#   design   renders build/board/<board>/sanitas_bd.tcl (Vivado block design) and hls_export.tcl (Vitis HLS
#            export of sanitas_top) from boards/<board>/board.json (python -m sanitas.board.bd)
#   overlay  design, then -- where vitis_hls and vivado are on PATH -- the HLS export of sanitas_top into
#            build/board/<board>/ip and the bitstream; sanitas.bit + sanitas.hwh land in build/board/<board>/overlay.
#            Without the tools it stops with one line (exit 2) after writing the tcl.
#
# Variables: PYTHON (default <repo>/.venv/bin/python if present, else python3); BUILD (default
# <repo>/build/board/<board>); HLS_SRC, the folder with the network's C++ of sanitas_top (default $(BUILD)/top,
# where `sanitas board --backend fake --board <board>` has sanitas.hls.top write it).
BOARD   := $(notdir $(patsubst %/,%,$(CURDIR)))
ROOT    := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)
PYTHON  ?= $(if $(wildcard $(ROOT)/.venv/bin/python),$(ROOT)/.venv/bin/python,python3)
BUILD   ?= $(ROOT)/build/board/$(BOARD)
HLS_SRC ?= $(BUILD)/top
export PYTHONPATH := $(ROOT)/python$(if $(PYTHONPATH),:$(PYTHONPATH),)

.DEFAULT_GOAL := overlay
.PHONY: design overlay clean

design:
	@$(PYTHON) -m sanitas.board.bd $(BOARD) $(BUILD)

overlay: design
	@for t in vitis_hls vivado; do command -v $$t >/dev/null 2>&1 || { \
	  echo "sanitas: overlay needs Vitis HLS and Vivado ($$t not on PATH); block design written to $(BUILD)/sanitas_bd.tcl" >&2; \
	  exit 2; }; done
	cd $(BUILD) && vitis_hls -f hls_export.tcl -tclargs $(HLS_SRC) $(ROOT)/hls/include $(BUILD)/ip
	cd $(BUILD) && vivado -mode batch -nojournal -nolog -source sanitas_bd.tcl -tclargs $(BUILD)/ip $(BUILD)/overlay

clean:
	rm -rf $(BUILD)
