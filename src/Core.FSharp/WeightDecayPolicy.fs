namespace BlockwiseLR.Core

open BlockwiseLR

/// Which parameters weight decay applies to.
[<RequireQualifiedAccess>]
module internal WeightDecay =
    /// Whether weight decay applies to the parameter `name` of `shape` under `policy`.
    let applies (policy: WeightDecayPolicy) (name: string) (shape: int64 list) =
        match policy with
        | WeightDecayPolicy.AllParameters -> true
        | WeightDecayPolicy.MatricesOnly -> shape.Length >= 2
        | _ ->
            let lower = name.ToLowerInvariant()
            not (lower.Contains "norm" || lower.Contains "ln" || lower.Contains "bias")
