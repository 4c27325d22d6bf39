/// The CLI schema: one Argu union per subcommand, with its usage text beside each case.
module BlockwiseLR.Cli.Arguments

open Argu

type ScheduleArgs =
    | [<Mandatory>] Steps of total: int
    | Warmup of steps: int
    | Lr of base_lr: float
    | Ratios of spec: string
    | Schedule of kind: string
    | Floor of lr: float
    | Alpha
    | Untied
    | Points of count: int

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Steps _ -> "run length T in optimizer steps."
            | Warmup _ -> "warmup steps W (default: 2% of T, at least 1)."
            | Lr _ -> "base (AdamW) peak LR; a block's peak is ratio x this (default 6e-4)."
            | Ratios _ -> "paper (default), uniform, or a map like emb=10,qk=8,vo=4,ffn=6,norm=1[,head=1]."
            | Schedule _ -> "cosine (default), linear, constant, wsd, wsd-cosine, wsd-1-sqrt, wsd-anneal."
            | Floor _ -> "the one floor every block decays to (default: base LR / 20, the official recipe)."
            | Alpha -> "alpha mode: a block's warmup is ratio times longer (equal warmup slopes)."
            | Untied -> "the output head is its own tensor (LLaMA); default: tied to the embedding (GPT-2)."
            | Points _ -> "evenly spaced steps to print besides the phase boundaries (default 10)."

type BlocksArgs =
    | [<MainCommand; Mandatory>] File of safetensors: string
    | [<AltCommandLine("-r")>] Block_Rule of rule: string
    | Block_Rules of path: string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | File _ -> "a .safetensors file (only its header is read)."
            | Block_Rule _ -> "an extra rule PATTERN=BLOCK (blocks: emb, pe, qk, vo, ffn, norm, head; PATTERN=qk,qk,vo splits a fused projection); repeatable, first wins, before the built-in rules."
            | Block_Rules _ -> "a file of rules, one PATTERN=BLOCK a line, # comments; read before --block-rule."

type DoctorArgs =
    | [<Hidden>] Quiet

    interface IArgParserTemplate with
        member _.Usage = "print nothing on success."

type BlrArgs =
    | [<CliPrefix(CliPrefix.None)>] Schedule of ParseResults<ScheduleArgs>
    | [<CliPrefix(CliPrefix.None)>] Blocks of ParseResults<BlocksArgs>
    | [<CliPrefix(CliPrefix.None)>] Doctor of ParseResults<DoctorArgs>
    | Version

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Schedule _ -> "print the per-block LR schedule of a run (e.g. blr schedule --steps 2000 --warmup 100)."
            | Blocks _ -> "show which block each parameter of a .safetensors file belongs to, and counts per block."
            | Doctor _ -> "check that libtorch loads and computes on this machine."
            | Version -> "print the version."
