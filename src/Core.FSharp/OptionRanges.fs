namespace BlockwiseLR.Core

open BlockwiseLR

open System
open System.Globalization

/// One end of a numeric option's range.
type internal RangeEnd =
    {
        /// The bound.
        Value: float
        /// Whether the bound itself is in the range.
        Inclusive: bool
    }

/// The range of one numeric option, by its flag without dashes ("threads", "lr"): what `--help` shows and what
/// the library and the CLI check before any work.
type internal OptionRange =
    {
        /// The flag without its dashes; the same flag means the same quantity in every subcommand.
        Key: string
        /// The lower end (None: unbounded below).
        Min: RangeEnd option
        /// The upper end (None: unbounded above).
        Max: RangeEnd option
        /// A whole number (printed without a decimal point, and refused when fractional).
        Whole: bool
        /// What 0 means where 0 is accepted outside [Min, Max] ("greedy"); None: 0 follows the range.
        Zero: string option
        /// Why the bounds are where they are, for the message and the help ("" for none).
        Why: string
    }

/// The table of numeric option ranges: one row per flag, read by the library's option checks, by the CLI's
/// check of every parsed flag and by the help text of every numeric flag.
[<RequireQualifiedAccess>]
module internal OptionRanges =
    /// The most threads a command takes: four per core (more only thrash; 100,000 made 29,885 OS threads).
    let maxThreads = 4 * Environment.ProcessorCount

    /// The largest base LR: a block's peak (LR x its ratio, up to maxRatio) and its products with weight decay
    /// and the update stay far inside float32 (3.4e38).
    let maxLr = 100.0

    /// The largest block ratio (fixed or auto).
    let maxRatio = 1000.0

    let private at (x: float) = Some { Value = x; Inclusive = true }
    let private above (x: float) = Some { Value = x; Inclusive = false }
    let private below (x: float) = Some { Value = x; Inclusive = false }

    let private whole key min max why =
        {
            Key = key
            Min = at min
            Max = max |> Option.map (fun m -> { Value = m; Inclusive = true })
            Whole = true
            Zero = None
            Why = why
        }

    let private real key min max why =
        {
            Key = key
            Min = min
            Max = max
            Whole = false
            Zero = None
            Why = why
        }

    let private cores = sprintf "4 x this machine's %d cores" Environment.ProcessorCount

    let private positiveModel key =
        whole key 1.0 None "the memory the model needs is checked before training"

    /// Every numeric flag of every subcommand.
    let table: OptionRange list =
        [
            whole "threads" 1.0 (Some(float maxThreads)) cores
            whole "nproc" 1.0 (Some 1024.0) ""
            whole "zero" 0.0 (Some 1.0) "0: no sharding, 1: optimizer state sharded"
            whole "steps" 1.0 None ""
            whole "warmup" 0.0 None "at most the run length"
            whole "points" 0.0 (Some 10000.0) "lines printed"
            real "lr" (above 0.0) (at maxLr) "so that LR x ratio x weight decay stays finite in float32"
            real "floor" (at 0.0) (at maxLr) "at most the lowest block peak"
            real "weight-decay" (at 0.0) (at 100.0) "p *= 1 - lr x wd"
            real "grad-clip" (at 0.0) None "0: off"
            whole "batch-size" 1.0 (Some 1048576.0) "the memory a training step needs is checked before training"
            whole "micro-batch-size" 1.0 (Some 1048576.0) "a divisor of the batch"
            whole "seq-len" 1.0 (Some 1048576.0) "at most the model's context"
            whole "seed" 0.0 None "any 64-bit unsigned integer"
            whole "eval-every" 0.0 None "0: only at the end"
            whole "eval-windows" 1.0 None ""
            whole "checkpoint-every" 0.0 None "0: only at the end"
            whole "keep-checkpoints" 1.0 None ""
            real "bucket-mb" (above 0.0) (at 65536.0) "MiB"
            real "auto-alpha" (above 0.0) (at 100.0) ""
            real "auto-max-ratio" (at 1.0) (at maxRatio) ""
            whole "auto-every" 1.0 None ""
            real "auto-smoothing" (at 0.0) (below 1.0) ""
            whole "sharpness-every" 0.0 None "0: off"
            whole "noise-scale-every" 0.0 None "0: off"
            real "val-fraction" (at 0.0) (below 1.0) ""
            whole "val-tokens" 1.0 None ""
            whole "chunk-tokens" 1.0 None ""
            whole "shard-tokens" 1.0 (Some(float Int32.MaxValue)) "llm.c headers count tokens in an int32"
            positiveModel "layers"
            positiveModel "width"
            positiveModel "heads"
            positiveModel "kv-heads"
            positiveModel "d-ff"
            positiveModel "context"
            positiveModel "vocab"
            whole "windows" 1.0 None ""
            whole "batches" 1.0 (Some 1000000.0) ""
            whole "max-tokens" 0.0 (Some 1000000.0) ""
            {
                Key = "temperature"
                Min = at 0.01
                Max = at 100.0
                Whole = false
                Zero = Some "greedy"
                Why = "softmax of logits / t stays finite"
            }
            whole "top-k" 0.0 None "0: off"
            real "top-p" (above 0.0) (at 1.0) "1: off"
        ]

    let private byKey = table |> List.map (fun r -> r.Key, r) |> Map.ofList

    /// The range of a flag (without dashes), if it is numeric.
    let tryFind (key: string) = byKey.TryFind(key.TrimStart('-'))

    let private text (r: OptionRange) (x: float) =
        if r.Whole then
            x.ToString("0", CultureInfo.InvariantCulture)
        else
            x.ToString("R", CultureInfo.InvariantCulture)

    /// The bounds in words: "> 0 and <= 100", ">= 1".
    let bounds (r: OptionRange) =
        let side (e: RangeEnd option) (strict: string) (loose: string) =
            e
            |> Option.map (fun e -> sprintf "%s %s" (if e.Inclusive then loose else strict) (text r e.Value))

        [ side r.Min ">" ">="; side r.Max "<" "<=" ]
        |> List.choose id
        |> String.concat " and "

    let private why (r: OptionRange) =
        if r.Why = "" then "" else sprintf " (%s)" r.Why

    /// The range as `--help` shows it: "range: > 0 and <= 100 (...)".
    let describe (r: OptionRange) =
        match r.Zero with
        | Some zero -> sprintf "range: 0 (%s) or %s%s" zero (bounds r) (why r)
        | None -> sprintf "range: %s%s" (bounds r) (why r)

    /// Whether the value is inside the range.
    let contains (r: OptionRange) (x: float) =
        let inside =
            Double.IsFinite x
            && (not r.Whole || Math.Floor x = x)
            && r.Min
               |> Option.forall (fun e -> if e.Inclusive then x >= e.Value else x > e.Value)
            && r.Max
               |> Option.forall (fun e -> if e.Inclusive then x <= e.Value else x < e.Value)

        inside || (r.Zero.IsSome && x = 0.0)

    /// The refusal of a value outside the range ("must be a finite number > 0 and <= 100 (...)"), or Ok.
    let check (key: string) (x: float) : Result<unit, string> =
        match tryFind key with
        | None -> Ok()
        | Some r when contains r x -> Ok()
        | Some r ->
            let number = if r.Whole then "" else "a finite number "

            match r.Zero with
            | Some zero -> Error(sprintf "must be 0 (%s) or %s%s%s" zero number (bounds r) (why r))
            | None -> Error(sprintf "must be %s%s%s" number (bounds r) (why r))
