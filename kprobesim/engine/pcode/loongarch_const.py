"""Register ids for the loongarch64 engine (Unicorn has no LoongArch guest; these fill the gap).

General registers r0..r31 are 1..32, the PC is 33, and CSR number N is ``LA_REG_CSR_BASE + N``.
"""

LA_REG_INVALID = 0
LA_REG_R0 = 1
LA_REG_PC = 33
LA_REG_F0 = 34  # f0..f31 = 34..65 (64-bit FP registers)
LA_REG_FCC0 = 66  # fcc0..fcc7 = 66..73
LA_REG_FCSR0 = 74
LA_REG_LLBIT = 75  # the LL/SC LLbit (not a CSR; CSR.LLBCTL.ROLLB reads it)
LA_REG_CSR_BASE = 0x1000

# r0..r31 as module constants: LA_REG_R0 .. LA_REG_R31
for _i in range(32):
    globals()[f"LA_REG_R{_i}"] = LA_REG_R0 + _i
    globals()[f"LA_REG_F{_i}"] = LA_REG_F0 + _i
for _i in range(8):
    globals()[f"LA_REG_FCC{_i}"] = LA_REG_FCC0 + _i
del _i

# ABI aliases
LA_REG_ZERO = LA_REG_R0
LA_REG_RA = LA_REG_R0 + 1
LA_REG_TP = LA_REG_R0 + 2
LA_REG_SP = LA_REG_R0 + 3
LA_REG_A0 = LA_REG_R0 + 4
LA_REG_A7 = LA_REG_R0 + 11
LA_REG_FP = LA_REG_R0 + 22

# CSR numbers (LoongArch privileged spec, chapter 7)
CSR_CRMD = 0x0
CSR_PRMD = 0x1
CSR_EUEN = 0x2
CSR_MISC = 0x3
CSR_ECFG = 0x4
CSR_ESTAT = 0x5
CSR_ERA = 0x6
CSR_BADV = 0x7
CSR_BADI = 0x8
CSR_EENTRY = 0xC
CSR_TLBIDX = 0x10
CSR_TLBEHI = 0x11
CSR_TLBELO0 = 0x12
CSR_TLBELO1 = 0x13
CSR_ASID = 0x18
CSR_PGDL = 0x19
CSR_PGDH = 0x1A
CSR_PGD = 0x1B
CSR_PWCL = 0x1C
CSR_PWCH = 0x1D
CSR_STLBPS = 0x1E
CSR_RVACFG = 0x1F
CSR_CPUID = 0x20
CSR_PRCFG1 = 0x21
CSR_PRCFG2 = 0x22
CSR_PRCFG3 = 0x23
CSR_SAVE0 = 0x30  # SAVE0..SAVE7 = 0x30..0x37
CSR_SAVE1 = 0x31
CSR_SAVE2 = 0x32
CSR_SAVE3 = 0x33
CSR_SAVE4 = 0x34
CSR_SAVE5 = 0x35
CSR_SAVE6 = 0x36
CSR_SAVE7 = 0x37
CSR_TID = 0x40
CSR_TCFG = 0x41
CSR_TVAL = 0x42
CSR_CNTC = 0x43
CSR_TICLR = 0x44
CSR_LLBCTL = 0x60
CSR_TLBRENTRY = 0x88
CSR_TLBRBADV = 0x89
CSR_TLBRERA = 0x8A
CSR_TLBRSAVE = 0x8B
CSR_TLBRPRMD = 0x8F
CSR_MERRENTRY = 0x93
CSR_DMW0 = 0x180  # DMW0..DMW3 = 0x180..0x183
CSR_DMW1 = 0x181
CSR_DMW2 = 0x182
CSR_DMW3 = 0x183

for _name, _num in list(globals().items()):
    if _name.startswith("CSR_"):
        globals()[f"LA_REG_{_name}"] = LA_REG_CSR_BASE + _num
del _name, _num

# Exception codes (ESTAT.Ecode)
EXC_INT = 0x0
EXC_PIL = 0x1
EXC_PIS = 0x2
EXC_PIF = 0x3
EXC_PME = 0x4
EXC_ADE = 0x8  # subcode 0 = ADEF (fetch), 1 = ADEM (memory)
EXC_ALE = 0x9
EXC_BCE = 0xA
EXC_SYS = 0xB
EXC_BRK = 0xC
EXC_INE = 0xD
EXC_IPE = 0xE
EXC_FPD = 0xF
EXC_FPE = 0x12

# ESTAT.IS interrupt lines
INT_SWI0 = 0
INT_SWI1 = 1
INT_HWI0 = 2  # HWI0..HWI7 = 2..9
INT_PMI = 10
INT_TI = 11
INT_IPI = 12
