"""The register map of ``sanitas_top``, s_axi_control: the one table of it (docs/architecture.md, "The accelerator").

The IP is an AXI4-Lite-controlled block with the standard Vitis HLS ``ap_ctrl_hs`` protocol: the host writes the
DDR addresses of an int8 input tensor (N, C, H, W) and of an int32 logits buffer (N, classes), the batch size
``n``, then sets ``ap_start`` and polls ``ap_done``. The PYNQ driver (``board/driver.py``, which re-exports these
names), the fake device and the ``.hwh`` writer (``board/fake.py``, ``board/overlay.py``) read ``REGISTERS``.
Vitis renames ``in``/``out`` to ``in_r``/``out_r`` (reserved words in VHDL) and splits a 64-bit pointer into
``_1`` (bits 31..0) and ``_2`` (bits 63..32) registers; output scalars get a data word and an ``ap_vld`` word.
"""
from __future__ import annotations

from dataclasses import dataclass, field

VLNV = "sanitas.org:hls:sanitas_top:1.0"
IP_NAME = "sanitas_top"          # module type; the block-design instance is ``sanitas_top_0``
CONTROL_INTERFACE = "s_axi_control"
MEMORY_INTERFACE = "m_axi_gmem"
ADDR_RANGE = 0x10000             # bytes of PL address space Vivado assigns to s_axi_control (64 KiB)
DATA_WIDTH = 32                  # AXI4-Lite data width of s_axi_control (bits)


@dataclass(frozen=True)
class Field:
    """One bit field of a register: bits [offset, offset + width)."""
    name: str
    offset: int          # LSB position
    width: int           # bits
    access: str          # "read-write" | "read-only" | "write-only"
    description: str


@dataclass(frozen=True)
class Reg:
    """One 32-bit register of ``s_axi_control``."""
    name: str            # name as Vitis HLS writes it into component.xml / the .hwh
    offset: int          # byte offset from the IP base address
    access: str          # "read-write" | "read-only" | "write-only"
    description: str
    fields: tuple[Field, ...] = field(default_factory=tuple)
    size: int = 32       # bits

    def fields_or_whole(self) -> tuple[Field, ...]:
        """The bit fields; a plain data register is one field spanning all 32 bits (as Vitis writes it)."""
        return self.fields or (Field(self.name, 0, self.size, self.access, f"Bit 31 to 0 {self.description}"),)


def _data(name: str, offset: int, access: str, text: str) -> Reg:
    return Reg(name, offset, access, text)


def _vld(name: str, offset: int) -> Reg:
    return Reg(f"{name}_ctrl", offset, "read-only", f"Control signal of {name}",
               (Field(f"{name}_ap_vld", 0, 1, "read-only", f"{name} was written by the last run (clear on read)"),
                Field("RESERVED", 1, 31, "read-only", "Reserved. 0s on read.")))


# ap_ctrl_hs control bits (CTRL, offset 0x00)
AP_START, AP_DONE, AP_IDLE, AP_READY, AUTO_RESTART = 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 7

#: The status counters of one run, in ``sanitas.protect.Report``'s names and order (one name at every level):
#: ``Report.summary()`` fields less ``protection_faults`` and ``clipped`` (no hardware scheme has those).
STATUS_COUNTERS = ("detected", "located", "corrected", "repaired", "rolled_back", "uncorrectable", "escalations",
                   "scrubbed")
COUNTER_BASE = 0x30            # first counter's data word; each output scalar takes 16 bytes (data, ap_vld, 2 gaps)
#: The fault-injection registers (sanitas_top built with the debug port; ignored otherwise): one ``Fault`` record
#: as ``sanitas.hls.faultport.fault_registers`` encodes it. Input scalars take 8 bytes (data word, reserved word).
FAULT_REGISTERS = (
    ("fi_enable", ("bit0: inject the fault described by the other fi_* registers in this run (at every read, for "
                   "every image); bit1 with bit0: a persistent upset, written once into the parameter memory")),
    ("fi_site", "site code of the fault (faultport.SITE_CODES: weight, bias, acc, output, input)"),
    ("fi_layer", "node index of the faulted layer in the network's node list"),
    ("fi_index", "flat C-order element index into one image's tensor (or the parameter array)"),
    ("fi_and", "AND mask on the element's bit pattern (faults.fault_masks)"),
    ("fi_or", "OR mask on the element's bit pattern"),
    ("fi_xor", "XOR mask on the element's bit pattern"),
    ("fi_and_hi", "AND mask, bits 63..32 (the 64-bit seal and layer-wide sum words)"),
    ("fi_or_hi", "OR mask, bits 63..32"),
    ("fi_xor_hi", "XOR mask, bits 63..32"),
)
#: The per-layer reload port (escalations, issue 15): written before an ap_start (``n`` may be 0), the run first
#: rewrites node ``reload_layer``'s parameter memory (weights, biases, sanity rows and seals) from the trusted image
#: when bit0 of ``reload`` is set, counted in ``escalations`` (a layer reloaded from the trusted image).
RELOAD_REGISTERS = (
    ("reload_layer", "node index of the layer whose parameter memory the reload command rewrites"),
    ("reload", "bit0: rewrite reload_layer's memory from the trusted image before this run's images"),
)
RELOAD_BASE = COUNTER_BASE + 0x10 * len(STATUS_COUNTERS)
FAULT_BASE = RELOAD_BASE + 8 * len(RELOAD_REGISTERS)

#: The register map of sanitas_top, s_axi_control (all 32-bit, little endian), in Vitis HLS's argument layout
#: for ``sanitas_top(in, out, n, detected, ..., scrubbed, reload_layer, reload, fi_enable, ..., fi_xor_hi)``:
#:
#: ======  ===============  ======  =====================================================================
#: offset  name             access  meaning
#: ======  ===============  ======  =====================================================================
#: 0x00    CTRL             rw      bit0 ap_start (W1, self-clearing), bit1 ap_done (COR), bit2 ap_idle,
#:                                  bit3 ap_ready (COR), bit7 auto_restart (unused by this driver)
#: 0x04    GIER             rw      bit0 global interrupt enable
#: 0x08    IP_IER           rw      bit0 ap_done interrupt enable, bit1 ap_ready interrupt enable
#: 0x0C    IP_ISR           rw      bit0 ap_done, bit1 ap_ready interrupt status (toggle on write 1)
#: 0x10    in_r_1           w       input tensor address, bits 31..0   (int8 (N, C, H, W), C-order)
#: 0x14    in_r_2           w       input tensor address, bits 63..32
#: 0x1C    out_r_1          w       logits address, bits 31..0         (int32 (N, classes), C-order)
#: 0x20    out_r_2          w       logits address, bits 63..32
#: 0x28    n                w       batch size N (images per ap_start)
#: 0x30    detected         r       counter of the last run (STATUS_COUNTERS[i] at 0x30 + 0x10 * i) ...
#: 0x34    detected_ctrl    r       bit0 detected_ap_vld (COR)
#: ...     (located, corrected, repaired, rolled_back, uncorrectable, escalations, scrubbed: 0x40 .. 0xA0)
#: 0xB0    reload_layer     w       node index of the layer the reload command rewrites
#: 0xB8    reload           w       bit0: reload that layer from the trusted image before the run's images
#: 0xC0    fi_enable        w       FAULT_REGISTERS[i] at 0xC0 + 8 * i (fi_site 0xC8 ... fi_xor_hi 0x108)
#: ======  ===============  ======  =====================================================================
_COUNTER_TEXT = {
    "detected": "checks that failed during the last run",
    "located": "faulty elements / rows / channels located during the last run",
    "corrected": "output elements corrected during the last run",
    "repaired": "memory words scrubbed (repaired) during the last run",
    "rolled_back": "DMR rollbacks (re-reads and re-executions) during the last run",
    "uncorrectable": "checks still failing after everything the protection can do, last run",
    "escalations": "layers reloaded from the trusted image during the last run",
    "scrubbed": "parameter words verified by the patrol scrubber during the last run",
}
REGISTERS: tuple[Reg, ...] = (
    Reg("CTRL", 0x00, "read-write", "Control signals", (
        Field("AP_START", 0, 1, "read-write", "Control signal Register for 'ap_start'."),
        Field("AP_DONE", 1, 1, "read-only", "Control signal Register for 'ap_done'."),
        Field("AP_IDLE", 2, 1, "read-only", "Control signal Register for 'ap_idle'."),
        Field("AP_READY", 3, 1, "read-only", "Control signal Register for 'ap_ready'."),
        Field("RESERVED_1", 4, 3, "read-only", "Reserved. 0s on read."),
        Field("AUTO_RESTART", 7, 1, "read-write", "Control signal Register for 'auto_restart'."),
        Field("RESERVED_2", 8, 24, "read-only", "Reserved. 0s on read."))),
    Reg("GIER", 0x04, "read-write", "Global Interrupt Enable Register", (
        Field("Enable", 0, 1, "read-write", "Master enable for the device interrupt output"),
        Field("RESERVED", 1, 31, "read-only", "Reserved. 0s on read."))),
    Reg("IP_IER", 0x08, "read-write", "IP Interrupt Enable Register", (
        Field("CHAN0_INT_EN", 0, 1, "read-write", "Enable Channel 0 (ap_done) Interrupt."),
        Field("CHAN1_INT_EN", 1, 1, "read-write", "Enable Channel 1 (ap_ready) Interrupt."),
        Field("RESERVED", 2, 30, "read-only", "Reserved. 0s on read."))),
    Reg("IP_ISR", 0x0C, "read-write", "IP Interrupt Status Register", (
        Field("CHAN0_INT_ST", 0, 1, "read-write", "Channel 0 (ap_done) Interrupt Status (toggle on write 1)."),
        Field("CHAN1_INT_ST", 1, 1, "read-write", "Channel 1 (ap_ready) Interrupt Status (toggle on write 1)."),
        Field("RESERVED", 2, 30, "read-only", "Reserved. 0s on read."))),
    _data("in_r_1", 0x10, "write-only", "Data signal of in_r (input tensor address, low word)"),
    _data("in_r_2", 0x14, "write-only", "Data signal of in_r (input tensor address, high word)"),
    _data("out_r_1", 0x1C, "write-only", "Data signal of out_r (logits address, low word)"),
    _data("out_r_2", 0x20, "write-only", "Data signal of out_r (logits address, high word)"),
    _data("n", 0x28, "write-only", "Data signal of n (batch size)"),
) + tuple(r for i, k in enumerate(STATUS_COUNTERS)
          for r in (_data(k, COUNTER_BASE + 0x10 * i, "read-only", f"Data signal of {k} ({_COUNTER_TEXT[k]})"),
                    _vld(k, COUNTER_BASE + 0x10 * i + 4))
) + tuple(_data(k, RELOAD_BASE + 8 * i, "write-only", f"Data signal of {k} ({text})")
          for i, (k, text) in enumerate(RELOAD_REGISTERS)
) + tuple(_data(k, FAULT_BASE + 8 * i, "write-only", f"Data signal of {k} ({text})")
          for i, (k, text) in enumerate(FAULT_REGISTERS))
REG = {r.name: r for r in REGISTERS}
OFFSET = {r.name: r.offset for r in REGISTERS}
#: s_axi_control address width HLS would generate: enough bits for the highest register
ADDR_WIDTH = max(r.offset for r in REGISTERS).bit_length()


def registers_dict() -> dict:
    """The map in pynq's ``ip_dict[...]["registers"]`` form (what pynq parses out of the .hwh)."""
    return {
        r.name: {
            "address_offset": r.offset, "size": r.size, "access": r.access, "description": r.description,
            "fields": {f.name: {"bit_offset": f.offset, "bit_width": f.width, "access": f.access,
                                "description": f.description} for f in r.fields_or_whole()},
        }
        for r in REGISTERS
    }


def word(name: str) -> int:
    """Index of register ``name`` in the register file as a uint32 array (byte offset / 4: ``sanitas_top_axi``)."""
    return OFFSET[name] // 4


#: Words of the register file ``sanitas_top_axi`` takes (every offset below it).
REG_WORDS = max(r.offset for r in REGISTERS) // 4 + 1


def render_header() -> str:
    """``sanitas_regmap.h``: the byte offsets and word indices of every register, for the C++ top."""
    lines = ["// sanitas_regmap.h -- generated by sanitas.hls.regmap.render_header(); do not edit.",
             "// The s_axi_control register map of sanitas_top (byte offsets; *_W: index into a uint32 register file).",
             "#ifndef SANITAS_REGMAP_H", "#define SANITAS_REGMAP_H", ""]
    for r in REGISTERS:
        lines.append(f"#define SANITAS_REG_{r.name.upper()} 0x{r.offset:02X}")
        lines.append(f"#define SANITAS_REG_{r.name.upper()}_W {r.offset // 4}")
    lines += ["", f"#define SANITAS_REG_WORDS {REG_WORDS}", f"#define SANITAS_N_COUNTERS {len(STATUS_COUNTERS)}",
              "// counter i (sanitas.hls.regmap.STATUS_COUNTERS order) sits at word SANITAS_COUNTER_W(i)",
              f"#define SANITAS_COUNTER_W(i) ({COUNTER_BASE // 4} + 4 * (i))",
              "// " + ", ".join(f"{i}: {k}" for i, k in enumerate(STATUS_COUNTERS)), "",
              "#endif  // SANITAS_REGMAP_H", ""]
    return "\n".join(lines)
