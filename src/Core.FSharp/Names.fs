namespace BlockwiseLR.Core

open BlockwiseLR

open System

/// The names of every closed choice a run makes (optimizer, schedule, precision, weight-decay policy,
/// architecture), and the one parser for them: case-insensitive, surrounding spaces ignored. The first name of a
/// value is the one written back (options.json, tables); later ones are accepted aliases. The CLI, the JSON
/// reader and C# all parse through here.
[<RequireQualifiedAccess>]
module internal Names =
    /// The optimizer names: "adamw", "blockwise-adamw", "adam-mini", "blockwise-adam-mini", "lion", "blockwise-lion",
    /// "muon", "blockwise-muon".
    let optimizers =
        [
            "adamw", OptimizerKind.AdamW
            "blockwise-adamw", OptimizerKind.BlockwiseAdamW
            "adam-mini", OptimizerKind.AdamMini
            "blockwise-adam-mini", OptimizerKind.BlockwiseAdamMini
            "lion", OptimizerKind.Lion
            "blockwise-lion", OptimizerKind.BlockwiseLion
            "muon", OptimizerKind.Muon
            "blockwise-muon", OptimizerKind.BlockwiseMuon
        ]

    /// The schedule names: "cosine", "linear", "constant", "wsd", "wsd-cosine", "wsd-1-sqrt", "wsd-anneal".
    let schedules =
        [
            "cosine", LrSchedule.Cosine
            "linear", LrSchedule.Linear
            "constant", LrSchedule.Constant
            "wsd", LrSchedule.Wsd
            "wsd-cosine", LrSchedule.WsdCosine
            "wsd-1-sqrt", LrSchedule.Wsd1Sqrt
            "wsd-anneal", LrSchedule.WsdAnneal
        ]

    /// The precision names: "fp32", "tf32", "bf16-mixed" (alias "bf16").
    let precisions =
        [
            "fp32", Precision.Fp32
            "tf32", Precision.Tf32
            "bf16-mixed", Precision.Bf16Mixed
            "bf16", Precision.Bf16Mixed
        ]

    /// The weight-decay policy names: "all", "matrices" (alias "no-1d"), "adam-mini".
    let weightDecayPolicies =
        [
            "all", WeightDecayPolicy.AllParameters
            "matrices", WeightDecayPolicy.MatricesOnly
            "no-1d", WeightDecayPolicy.MatricesOnly
            "adam-mini", WeightDecayPolicy.AdamMiniNames
        ]

    /// The Newton-Schulz precision names: "auto", "fp32", "bf16".
    let newtonSchulzPrecisions =
        [
            "auto", NewtonSchulzPrecision.Auto
            "fp32", NewtonSchulzPrecision.Float32
            "bf16", NewtonSchulzPrecision.BFloat16
        ]

    /// The architecture names: "gpt2", "llama".
    let architectures = [ "gpt2", Architecture.Gpt2; "llama", Architecture.Llama ]

    /// The names written back, one per value, in table order.
    let canonical (table: (string * 'T) list) : string list =
        table |> List.distinctBy snd |> List.map fst

    /// `text` as one of `table`'s values; the error names `what` and lists the canonical names.
    let parse (what: string) (table: (string * 'T) list) (text: string) : Result<'T, string> =
        let key = if isNull text then "" else text.Trim()

        match
            table
            |> List.tryFind (fun (name, _) -> String.Equals(name, key, StringComparison.OrdinalIgnoreCase))
        with
        | Some(_, value) -> Ok value
        | None -> Error(sprintf "unknown %s '%s' (known: %s)" what text (String.Join(", ", canonical table)))

    /// The name written back for a value.
    let format (table: (string * 'T) list) (value: 'T) : string =
        match table |> List.tryFind (fun (_, v) -> v = value) with
        | Some(name, _) -> name
        | None -> string value
