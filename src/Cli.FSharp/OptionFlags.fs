/// The flags that set training options (`blr train`, and the same flags of `compare` and `demo`) and the option
/// each sets, by its config-file path: the one table the CLI reads flags into `PretrainOptions.With` by, and says
/// a library message's options (`Schedule.Lr`) as flags (`--lr`) by.
module BlockwiseLR.Cli.OptionFlags

open System
open System.Text.RegularExpressions

/// Flag -> option path, one line each.
let table =
    [
        "--model", "model.name"
        "--set", "model.overrides"
        "--data", "data.path"
        "--optimizer", "optimizer.kind"
        "--ratios", "optimizer.ratios"
        "--auto-alpha", "optimizer.ratios.alpha"
        "--auto-max-ratio", "optimizer.ratios.maxRatio"
        "--auto-every", "optimizer.ratios.every"
        "--auto-smoothing", "optimizer.ratios.smoothing"
        "--auto-noise", "optimizer.ratios.noise"
        "--weight-decay", "optimizer.weightDecay"
        "--newton-schulz", "optimizer.newtonSchulz"
        "--schedule", "schedule.kind"
        "--lr", "schedule.lr"
        "--warmup", "schedule.warmupSteps"
        "--floor", "schedule.floorLr"
        "--alpha", "schedule.alphaWarmup"
        "--steps", "training.steps"
        "--batch-size", "training.batchSize"
        "--micro-batch-size", "training.microBatchSize"
        "--seq-len", "training.seqLen"
        "--seed", "training.seed"
        "--precision", "training.precision"
        "--grad-clip", "training.gradClip"
        "--device", "training.device"
        "--threads", "training.threads"
        "--eval-every", "evaluation.every"
        "--eval-windows", "evaluation.windows"
        "--out", "run.out"
        "--overwrite", "run.overwrite"
        "--checkpoint-every", "checkpoint.every"
        "--keep-checkpoints", "checkpoint.keep"
        "--resume", "checkpoint.resume"
        "--init-from", "checkpoint.initFrom"
        "--zero", "parallelism.zero"
        "--bucket-mb", "parallelism.bucketMb"
        "--sharpness-every", "debug.sharpnessEvery"
        "--noise-scale-every", "debug.noiseScaleEvery"
        "--peak-tflops", "debug.peakTflops"
        "--deterministic", "debug.deterministic"
    ]

let private pathOfFlag = Map table
let private flagOfPath = table |> List.map (fun (flag, path) -> path, flag) |> Map

/// The option path a flag sets, if it sets one.
let pathOf (flag: string) = pathOfFlag.TryFind flag

/// The path of an option as the library names it in messages: "Schedule.Lr" -> "schedule.lr".
let pathOfName (name: string) =
    name.Split('.')
    |> Array.map (fun part ->
        if part = "" then
            part
        else
            string (Char.ToLowerInvariant part[0]) + part.Substring 1)
    |> String.concat "."

/// The flag of an option named as the library names it ("Schedule.Lr" -> "--lr"), among `flags`.
let flagOfName (flags: string list) (name: string) =
    flagOfPath.TryFind(pathOfName name)
    |> Option.filter (fun flag -> List.contains flag flags)

/// A library text with each option it names ("Optimizer.Ratios", "Checkpoint.Resume") said as its flag among
/// `flags`; other words are left alone.
let inFlags (flags: string list) (text: string) =
    Regex.Replace(
        text,
        @"(?<![\w/.-])[A-Z][A-Za-z0-9]*(?:\.[A-Z][A-Za-z0-9]*)+(?![\w/-])",
        fun m -> flagOfName flags m.Value |> Option.defaultValue m.Value
    )
