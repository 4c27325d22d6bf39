namespace BlockwiseLR.Core

open BlockwiseLR

/// The hyperparameters a family's recipe uses when the user sets none: AdamW, Adam-mini and Muon (whose AdamW part
/// takes the betas; its matrices' update is scaled to AdamW's RMS) use the paper's (0.9, 0.95), weight decay 0.1 and
/// AdamW's LR; Lion the official scripts' (0.95, 0.98), weight decay 1.0 and a tenth of AdamW's LR (their Lion base
/// 1e-4 against AdamW's 1e-3: Lion's sign update has RMS 1, larger than Adam's, and lr x wd stays the same).
type internal OptimizerRecipe =
    {
        /// Adam's beta1 (Lion's interpolation beta).
        Beta1: float
        /// Adam's beta2 (Lion's momentum beta).
        Beta2: float
        /// Decoupled weight decay: p *= 1 - lr x wd each step.
        WeightDecay: float
        /// The base LR as a multiple of AdamW's (what `blr compare` gives the family when AdamW's LR is swept).
        LrScale: float
    }

/// What each optimizer kind is: its family and whether it is blockwise, and each family's recipe.
[<RequireQualifiedAccess>]
[<CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
module internal OptimizerKind =
    /// Whose state the optimizer keeps and whose update it runs.
    let family (kind: OptimizerKind) =
        match kind with
        | OptimizerKind.AdamMini
        | OptimizerKind.BlockwiseAdamMini -> OptimizerFamily.AdamMini
        | OptimizerKind.Lion
        | OptimizerKind.BlockwiseLion -> OptimizerFamily.Lion
        | OptimizerKind.Muon
        | OptimizerKind.BlockwiseMuon -> OptimizerFamily.Muon
        | _ -> OptimizerFamily.AdamW

    /// Whether each block gets its own peak LR (the plain ones give every block the base LR).
    let isBlockwise (kind: OptimizerKind) =
        match kind with
        | OptimizerKind.BlockwiseAdamW
        | OptimizerKind.BlockwiseAdamMini
        | OptimizerKind.BlockwiseLion
        | OptimizerKind.BlockwiseMuon -> true
        | _ -> false

    /// The recipe's defaults for a family.
    let recipe (family: OptimizerFamily) =
        match family with
        | OptimizerFamily.Lion ->
            {
                Beta1 = 0.95
                Beta2 = 0.98
                WeightDecay = 1.0
                LrScale = 0.1
            }
        | _ ->
            {
                Beta1 = 0.9
                Beta2 = 0.95
                WeightDecay = 0.1
                LrScale = 1.0
            }

/// Muon's split of the parameters (Moonlight's toy_train.py, the API the paper's C4 script calls): the hidden
/// matrices (attention QK and VO, feed-forward) are orthogonalized by Newton-Schulz; embeddings, the head, norms and
/// every vector (biases) take AdamW in the same optimizer.
[<RequireQualifiedAccess>]
module internal Muon =
    /// Whether Muon orthogonalizes a parameter of this block and shape (a 2-D hidden matrix).
    let orthogonalizes (block: BlockKind) (shape: int64 list) =
        List.length shape = 2
        && (block = BlockKind.AttentionQK
            || block = BlockKind.AttentionVO
            || block = BlockKind.FeedForward)

    /// The update's LR multiplier for a rows x cols matrix, 0.2 sqrt(max(rows, cols)): it gives the orthogonalized
    /// update (singular values near 1, RMS about 1/sqrt(max)) AdamW's update RMS of about 0.2, so one base LR and
    /// the same block ratios serve both.
    let scale (rows: int64) (cols: int64) = 0.2 * sqrt (float (max rows cols))

    /// Newton-Schulz steps and their quintic coefficients (a, b, c): X <- a X + (b A + c A^2) X with A = X X^T.
    let steps = 5
    /// The quintic coefficients (a, b, c) of each Newton-Schulz step.
    let coefficients = (3.4445, -4.7750, 2.0315)

    /// Added to the Frobenius norm before dividing by it.
    let normEps = 1e-7

    /// Nesterov momentum of the reference: buf = m buf + g; u = g + m buf.
    let momentum = 0.95
