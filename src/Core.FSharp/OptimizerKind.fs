namespace BlockwiseLR.Core

/// Which optimizer's state to count (Blockwise variants keep the same state as their base).
type OptimizerFamily =
    | AdamW = 0
    | AdamMini = 1

/// The four optimizers of a run: AdamW or Adam-mini, each plain (one LR for every block) or blockwise (an LR
/// per block from the ratios). An enum, so C# sees it as one; its names are in `Names.optimizers`.
type OptimizerKind =
    | AdamW = 0
    | BlockwiseAdamW = 1
    | AdamMini = 2
    | BlockwiseAdamMini = 3

[<RequireQualifiedAccess>]
module OptimizerKind =
    /// Whose state the optimizer keeps: AdamW's or Adam-mini's.
    let family (kind: OptimizerKind) =
        match kind with
        | OptimizerKind.AdamMini
        | OptimizerKind.BlockwiseAdamMini -> OptimizerFamily.AdamMini
        | _ -> OptimizerFamily.AdamW

    /// Whether each block gets its own peak LR (the plain ones give every block the base LR).
    let isBlockwise (kind: OptimizerKind) =
        kind = OptimizerKind.BlockwiseAdamW || kind = OptimizerKind.BlockwiseAdamMini
