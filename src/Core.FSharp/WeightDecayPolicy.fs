namespace BlockwiseLR.Core

/// Which parameters get decoupled weight decay. An enum, so C# sees it as one.
type WeightDecayPolicy =
    /// The paper's recipe: every parameter, norms and embeddings included.
    | AllParameters = 0
    /// nanoGPT: matrices and embeddings only; no decay on 1-D parameters (norms, biases).
    | MatricesOnly = 1
    /// Adam-mini 1.1.1: no decay for names containing `norm`, `ln` or `bias`.
    | AdamMiniNames = 2

/// Which parameters weight decay applies to.
[<RequireQualifiedAccess>]
module WeightDecay =
    /// Whether weight decay applies to the parameter `name` of `shape` under `policy`.
    let applies (policy: WeightDecayPolicy) (name: string) (shape: int64 list) =
        match policy with
        | WeightDecayPolicy.AllParameters -> true
        | WeightDecayPolicy.MatricesOnly -> shape.Length >= 2
        | _ ->
            let lower = name.ToLowerInvariant()
            not (lower.Contains "norm" || lower.Contains "ln" || lower.Contains "bias")
