/// Each subcommand: read its parsed arguments, call the facade, print.
module BlockwiseLR.Cli.Commands

open System
open System.IO
open Argu
open Spectre.Console
open BlockwiseLR
open BlockwiseLR.Cli.Arguments

let private blockColumns = Enum.GetValues<Block>() |> Array.ofSeq

let private lr (value: float) = value.ToString("0.000e+00", Globalization.CultureInfo.InvariantCulture)

let private shape (dims: int64[]) = "(" + (dims |> Array.map string |> String.concat ", ") + ")"

let schedule (args: ParseResults<ScheduleArgs>) =
    let total = args.GetResult ScheduleArgs.Steps
    let warmup = args.GetResult(ScheduleArgs.Warmup, defaultValue = max 1 (total / 50))
    let ratios = BlockRatios.Parse(args.GetResult(ScheduleArgs.Ratios, defaultValue = "paper"))
    let floor = args.TryGetResult ScheduleArgs.Floor |> Option.toNullable
    let plan =
        BlockSchedule.Create(
            args.GetResult(ScheduleArgs.Schedule, defaultValue = "cosine"),
            args.GetResult(ScheduleArgs.Lr, defaultValue = 6e-4),
            warmup,
            total,
            ratios,
            not (args.Contains ScheduleArgs.Untied),
            floor,
            args.Contains ScheduleArgs.Alpha
        )
    printfn "Per-block LR, %s schedule: base LR %g, shared floor %g, warmup %d of %d steps, ratios %O (%s head)"
        (args.GetResult(ScheduleArgs.Schedule, defaultValue = "cosine")) plan.BaseLr plan.FloorLr plan.WarmupSteps
        plan.TotalSteps ratios (if plan.TiedHead then "tied" else "untied")
    printfn "%8s %s" "step" (blockColumns |> Array.map (fun b -> sprintf "%11s" (Blocks.Key b)) |> String.concat "")
    for step in plan.Milestones(args.GetResult(ScheduleArgs.Points, defaultValue = 10)) do
        let lrs = blockColumns |> Array.map (fun b -> sprintf "%11s" (lr (plan.LrAt(b, step)))) |> String.concat ""
        printfn "%8d %s" step lrs
    0

let blocks (args: ParseResults<BlocksArgs>) =
    let file = args.GetResult BlocksArgs.File
    let fromFile =
        args.TryGetResult BlocksArgs.Block_Rules
        |> Option.fold (fun (rules: BlockRules) path -> rules.WithRulesText(File.ReadAllText path, path)) BlockRules.Default
    // Later --block-rule options take precedence over earlier ones and over the file.
    let rules =
        args.GetResults BlocksArgs.Block_Rule
        |> List.fold (fun (rules: BlockRules) text -> rules.WithRulesText(text, "--block-rule")) fromFile
    let parameters =
        SafetensorsHeader.Read file |> Seq.map (fun e -> ParameterShape(e.Name, e.Shape)) |> Array.ofSeq
    let placed = rules.Partition parameters
    for p in placed do
        let where =
            p.Slices
            |> Seq.map (fun s -> if s.Dim < 0 then string s.Block else sprintf "%O[dim %d: %d..%d)" s.Block s.Dim s.Start (s.Start + s.Length))
            |> String.concat ", "
        printfn "%-52s %-14s %s" p.Name (shape p.Shape) where
    let counts = rules.CountByBlock parameters
    printfn "%s" (String.replicate 40 "-")
    for KeyValue(block, count) in counts |> Seq.sortBy (fun kv -> kv.Key) do
        printfn "%-18s %14s" (string block) (count.ToString "N0")
    printfn "%-18s %14s" "total" ((counts.Values |> Seq.sum).ToString "N0")
    0

let prepare (args: ParseResults<PrepareArgs>) =
    let corpus =
        Data.CorpusOptions(
            Glob = args.GetResult(PrepareArgs.Glob, defaultValue = "*.txt"),
            JsonField = args.GetResult(PrepareArgs.Field, defaultValue = "text"),
            ParquetColumn = args.GetResult(PrepareArgs.Column, defaultValue = "text"),
            ReplaceInvalidUtf8 = args.Contains PrepareArgs.Replace_Invalid_Utf8
        )
    let defaults = Data.PrepareOptions(OutputDirectory = args.GetResult PrepareArgs.Out)
    let options =
        Data.PrepareOptions(
            OutputDirectory = defaults.OutputDirectory,
            Inputs = (args.GetResults PrepareArgs.Input |> Array.ofList),
            Builtin = (args.TryGetResult PrepareArgs.Builtin |> Option.toObj),
            Corpus = corpus,
            ValFraction = args.GetResult(PrepareArgs.Val_Fraction, defaultValue = defaults.ValFraction),
            ValTokens = (args.TryGetResult PrepareArgs.Val_Tokens |> Option.toNullable),
            ChunkTokens = args.GetResult(PrepareArgs.Chunk_Tokens, defaultValue = defaults.ChunkTokens),
            ShardTokens = args.GetResult(PrepareArgs.Shard_Tokens, defaultValue = defaults.ShardTokens),
            Seed = args.GetResult(PrepareArgs.Seed, defaultValue = defaults.Seed),
            Threads = args.GetResult(PrepareArgs.Threads, defaultValue = defaults.Threads),
            Overwrite = args.Contains PrepareArgs.Overwrite
        )
    let result =
        Spectre.Console.AnsiConsole.Progress().Start(fun context ->
            let task = context.AddTask("tokenizing", maxValue = 1.0)
            let report (p: Data.PrepareProgress) =
                task.MaxValue <- float p.Sources
                task.Value <- float p.SourcesDone
                task.Description <- sprintf "tokenizing: %s documents, %s tokens" (p.Documents.ToString "N0") (p.Tokens.ToString "N0")
            Data.ShardPreparer.Run(options, Progress<Data.PrepareProgress>(report)))
    printfn "%s documents -> %s train + %s val tokens (%d of %d chunks in val), %d shard(s) in %s"
        (result.Documents.ToString "N0") (result.TrainTokens.ToString "N0") (result.ValTokens.ToString "N0")
        result.ValChunks result.Chunks result.Shards.Count result.Directory
    printfn "%.1f s, %s tokens/s with %d thread(s)" result.Seconds (result.TokensPerSecond.ToString "N0") options.Threads
    0

/// Runs work under a progress bar with ETA; Ctrl-C asks the trainer to checkpoint and stop.
let private withTraining (describe: string) (work: IProgress<Training.TrainProgress> -> Threading.CancellationToken -> 'T) =
    use cancel = new Threading.CancellationTokenSource()
    Console.CancelKeyPress.Add(fun e ->
        e.Cancel <- true
        cancel.Cancel())
    AnsiConsole.Progress()
        .Columns(
            [| TaskDescriptionColumn() :> ProgressColumn
               ProgressBarColumn()
               PercentageColumn()
               RemainingTimeColumn() |]
        )
        .Start(fun context ->
            let task = context.AddTask(describe, maxValue = 1.0)
            let report (p: Training.TrainProgress) =
                task.MaxValue <- float p.Steps
                task.Value <- float p.Step
                let valText = if p.ValLoss.HasValue then sprintf ", val %.3f" p.ValLoss.Value else ""
                task.Description <- sprintf "%s: step %d/%d, loss %.3f%s, %s tok/s" describe p.Step p.Steps p.Loss valText (p.TokensPerSecond.ToString "N0")
            work (Progress<Training.TrainProgress>(report)) cancel.Token)

let private trainValues (args: ParseResults<TrainArgs>) : Collections.Generic.KeyValuePair<string, obj> list =
    let pair (key: string) (value: obj) = Collections.Generic.KeyValuePair(key, value)
    let overrides = args.GetResults TrainArgs.Set
    [ if not overrides.IsEmpty then yield pair "modelOverrides" (box (Array.ofList overrides))
      for a in args.GetAllResults() do
          match a with
          | TrainArgs.Model v -> yield pair "model" (box v)
          | TrainArgs.Data v -> yield pair "data" (box v)
          | TrainArgs.Optimizer v -> yield pair "optimizer" (box v)
          | TrainArgs.Ratios v -> yield pair "ratios" (box v)
          | TrainArgs.Lr v -> yield pair "lr" (box v)
          | TrainArgs.Schedule v -> yield pair "schedule" (box v)
          | TrainArgs.Warmup v -> yield pair "warmupSteps" (box v)
          | TrainArgs.Floor v -> yield pair "floorLr" (box v)
          | TrainArgs.Alpha -> yield pair "alphaWarmup" (box true)
          | TrainArgs.Steps v -> yield pair "steps" (box v)
          | TrainArgs.Batch_Size v -> yield pair "batchSize" (box v)
          | TrainArgs.Micro_Batch_Size v -> yield pair "microBatchSize" (box v)
          | TrainArgs.Seq_Len v -> yield pair "seqLen" (box v)
          | TrainArgs.Seed v -> yield pair "seed" (box v)
          | TrainArgs.Out v -> yield pair "out" (box v)
          | TrainArgs.Resume v -> yield pair "resume" (box v)
          | TrainArgs.Device v -> yield pair "device" (box v)
          | TrainArgs.Precision v -> yield pair "precision" (box v)
          | TrainArgs.Eval_Every v -> yield pair "evalEvery" (box v)
          | TrainArgs.Eval_Windows v -> yield pair "evalWindows" (box v)
          | TrainArgs.Checkpoint_Every v -> yield pair "checkpointEvery" (box v)
          | TrainArgs.Keep_Checkpoints v -> yield pair "keepCheckpoints" (box v)
          | TrainArgs.Grad_Clip v -> yield pair "gradClip" (box v)
          | TrainArgs.Weight_Decay v -> yield pair "weightDecay" (box v)
          | TrainArgs.Threads v -> yield pair "threads" (box v)
          | TrainArgs.Init_From v -> yield pair "initFrom" (box v)
          | TrainArgs.Peak_Tflops v -> yield pair "peakTflops" (box v)
          | TrainArgs.Auto_Alpha v -> yield pair "autoAlpha" (box v)
          | TrainArgs.Auto_Max_Ratio v -> yield pair "autoMaxRatio" (box v)
          | TrainArgs.Auto_Every v -> yield pair "autoEvery" (box v)
          | TrainArgs.Auto_Smoothing v -> yield pair "autoSmoothing" (box v)
          | TrainArgs.Sharpness_Every v -> yield pair "sharpnessEvery" (box v)
          | TrainArgs.Config _
          | TrainArgs.Set _ -> () ]

let train (args: ParseResults<TrainArgs>) =
    let fromFile =
        args.TryGetResult TrainArgs.Config
        |> Option.map Training.PretrainOptions.FromJsonFile
        |> Option.defaultWith (fun () -> Training.PretrainOptions())
    let options = fromFile.With(trainValues args)
    let result = withTraining options.Optimizer (fun progress cancel -> Training.Pretrainer.Run(options, progress, cancel))
    let summary = Table().AddColumn("").AddColumn(options.Optimizer)
    let row (name: string) (value: string) = summary.AddRow(Markup.Escape name, Markup.Escape value) |> ignore
    row "steps" (sprintf "%d%s" result.Steps (if result.Interrupted then " (interrupted)" else ""))
    row "final val loss" (sprintf "%.4f" result.FinalValLoss)
    row "best val loss" (sprintf "%.4f" result.BestValLoss)
    row "tokens/s" (result.TokensPerSecond.ToString "N0")
    row "ms/step" (sprintf "%.1f" result.MillisecondsPerStep)
    row "optimizer state" (sprintf "%s bytes" (result.OptimizerStateBytes.ToString "N0"))
    row "run folder" result.RunDirectory
    row "checkpoint" (string result.LastCheckpoint)
    AnsiConsole.Write summary
    if result.Interrupted then 130 else 0

let private deviceOf (name: string) =
    match name with
    | "cpu" -> TorchSharp.torch.CPU
    | "cuda" -> TorchSharp.torch.CUDA
    | other -> invalidArg "device" (sprintf "--device %s is not cpu or cuda" other)

let eval (args: ParseResults<EvalArgs>) =
    let result =
        Training.Evaluation.Run(
            args.GetResult EvalArgs.Model_Dir,
            args.TryGetResult EvalArgs.Data |> Option.toObj,
            args.TryGetResult EvalArgs.Text |> Option.toObj,
            args.GetResult(EvalArgs.Seq_Len, defaultValue = 256),
            args.GetResult(EvalArgs.Batch_Size, defaultValue = 8),
            args.GetResult(EvalArgs.Windows, defaultValue = 256L),
            deviceOf (args.GetResult(EvalArgs.Device, defaultValue = "cpu"))
        )
    printfn "%s: loss %.4f, perplexity %.2f over %d windows (%s tokens)" result.Model result.Loss result.Perplexity result.Windows (result.Tokens.ToString "N0")
    0

let sample (args: ParseResults<SampleArgs>) =
    let text =
        Training.TextGenerator.Generate(
            args.GetResult SampleArgs.Model_Dir,
            args.GetResult(SampleArgs.Prompt, defaultValue = ""),
            args.GetResult(SampleArgs.Max_Tokens, defaultValue = 100),
            args.GetResult(SampleArgs.Temperature, defaultValue = 0.8),
            args.GetResult(SampleArgs.Top_K, defaultValue = 50),
            args.GetResult(SampleArgs.Top_P, defaultValue = 0.95),
            args.GetResult(SampleArgs.Seed, defaultValue = 1337UL),
            deviceOf (args.GetResult(SampleArgs.Device, defaultValue = "cpu"))
        )
    printfn "%s" text
    0

/// import-hf and export-hf: read a model (HF folder, checkpoint or run), write it in Hugging Face format.
let convertHf (args: ParseResults<HfArgs>) =
    use model = Training.ModelLocator.Load(args.GetResult HfArgs.From)
    Models.HfFormat.Save(model, args.GetResult HfArgs.Out)
    printfn "%s -> %s (%s)" (args.GetResult HfArgs.From) (args.GetResult HfArgs.Out) (Models.ModelConfigs.Describe model.Config)
    0

let private commaList (text: string) = text.Split(',', StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries)

let compare (args: ParseResults<CompareArgs>) =
    let pair (key: string) (value: obj) = Collections.Generic.KeyValuePair(key, value)
    let overrides = args.GetResults CompareArgs.Set
    let values =
        [ if not overrides.IsEmpty then yield pair "modelOverrides" (box (Array.ofList overrides))
          yield pair "out" (box (args.GetResult(CompareArgs.Out, defaultValue = "runs/compare")))
          for a in args.GetAllResults() do
              match a with
              | CompareArgs.Data v -> yield pair "data" (box v)
              | CompareArgs.Model v -> yield pair "model" (box v)
              | CompareArgs.Steps v -> yield pair "steps" (box v)
              | CompareArgs.Batch_Size v -> yield pair "batchSize" (box v)
              | CompareArgs.Micro_Batch_Size v -> yield pair "microBatchSize" (box v)
              | CompareArgs.Seq_Len v -> yield pair "seqLen" (box v)
              | CompareArgs.Lr v -> yield pair "lr" (box v)
              | CompareArgs.Ratios v -> yield pair "ratios" (box v)
              | CompareArgs.Warmup v -> yield pair "warmupSteps" (box v)
              | CompareArgs.Eval_Every v -> yield pair "evalEvery" (box v)
              | CompareArgs.Eval_Windows v -> yield pair "evalWindows" (box v)
              | CompareArgs.Threads v -> yield pair "threads" (box v)
              | CompareArgs.Device v -> yield pair "device" (box v)
              | CompareArgs.Precision v -> yield pair "precision" (box v)
              | _ -> () ]
    let number (what: string) (parse: string -> bool * 'T) (text: string) =
        match parse text with
        | true, v -> v
        | _ -> invalidArg what (sprintf "--%s: '%s' is not a number" what text)
    let defaults = Training.CompareOptions(Common = Training.PretrainOptions())
    let options =
        Training.CompareOptions(
            Common = Training.PretrainOptions().With(values),
            Optimizers = (args.TryGetResult CompareArgs.Optimizers |> Option.map commaList |> Option.defaultValue (Array.ofSeq defaults.Optimizers)),
            Seeds = (args.TryGetResult CompareArgs.Seeds |> Option.map (commaList >> Array.map (number "seeds" UInt64.TryParse)) |> Option.defaultValue (Array.ofSeq defaults.Seeds)),
            LrSweep = (args.TryGetResult CompareArgs.Lr_Sweep |> Option.map (commaList >> Array.map (number "lr-sweep" (fun t -> Double.TryParse(t, Globalization.NumberStyles.Float, Globalization.CultureInfo.InvariantCulture)))) |> Option.defaultValue [||])
        )
    let report = withTraining "compare" (fun progress cancel -> Training.Comparison.Compare(options, null, progress, cancel))
    printfn "%s" (report.Table())
    printfn "report %s, curves %s" report.Markdown report.Png
    0

let plot (args: ParseResults<PlotArgs>) =
    let png = Training.Plots.Curves(args.GetResults PlotArgs.Run |> Array.ofList, args.GetResult PlotArgs.Out, args.Contains PlotArgs.Train)
    printfn "wrote %s" png
    0

let sharpness (args: ParseResults<SharpnessArgs>) =
    let steps = args.TryGetResult SharpnessArgs.Steps |> Option.map (commaList >> Array.map int) |> Option.toObj
    let struct (rows, csv, png) =
        Training.SharpnessReport.Measure(
            args.GetResult SharpnessArgs.Run, args.GetResult SharpnessArgs.Data, steps,
            args.GetResult(SharpnessArgs.Batches, defaultValue = 4), args.GetResult(SharpnessArgs.Batch_Size, defaultValue = 8),
            args.GetResult(SharpnessArgs.Seq_Len, defaultValue = 128), args.Contains SharpnessArgs.Hutchinson,
            args.GetResult(SharpnessArgs.Seed, defaultValue = 1337UL), (fun s -> eprintfn "measuring %s" s))
    printfn "%6s %-18s %24s %24s" "step" "block" "proxy (+- se)" "hutchinson (+- se)"
    for r in rows do
        let h = if isNull (box r.Hutchinson) then "" else sprintf "%.4e +- %.1e" r.Hutchinson.Mean r.Hutchinson.StdErr
        printfn "%6d %-18O %24s %24s" r.Step r.Block (sprintf "%.4e +- %.1e" r.Proxy.Mean r.Proxy.StdErr) h
    for step, group in rows |> Seq.groupBy (fun r -> r.Step) do
        for estimator in [ "proxy"; "hutchinson" ] do
            let hutchinson = estimator = "hutchinson"
            if not hutchinson || args.Contains SharpnessArgs.Hutchinson then
                let struct (order, matches) = Training.SharpnessReport.Ordering(group, hutchinson)
                printfn "step %d, %s, flattest first: %s (%s the paper's S(Emb) < S(QK) < S(FFN) < S(VO) < S(Norm))" step estimator
                    (order |> Seq.map Blocks.Key |> String.concat " < ") (if matches then "matches" else "differs from")
    printfn "wrote %s and %s" csv png
    0

let demo (args: ParseResults<DemoArgs>) =
    let options = Training.Comparison.DemoOptions(args.GetResult(DemoArgs.Out, defaultValue = "runs/demo"), args.Contains DemoArgs.Quick)
    printfn "BlockwiseLR demo: %s on the built-in Gutenberg corpus, AdamW vs Blockwise AdamW (paper ratios), %d steps of %d x %d tokens each"
        options.Model options.Steps options.BatchSize options.SeqLen.Value
    let report =
        withTraining "demo" (fun progress cancel ->
            Training.Comparison.Run(options, [| "adamw"; "blockwise-adamw" |], null, progress, cancel))
    printfn "%s" (report.Table())
    printfn "report %s, curves %s" report.Markdown report.Png
    0

let private mib (bytes: int64) = sprintf "%10.1f MiB" (float bytes / 1048576.0)

let inspect (args: ParseResults<InspectArgs>) =
    let overrides = args.GetAllResults() |> List.choose (fun a -> a.Override) |> Array.ofList
    let config = Models.ModelConfigs.Create(args.GetResult InspectArgs.Model, overrides)
    let device = args.GetResult(InspectArgs.Device, defaultValue = "cpu")
    if device <> "cpu" && device <> "cuda" then invalidArg "device" (sprintf "unknown device '%s' (cpu, cuda)" device)
    let batch = args.GetResult(InspectArgs.Batch_Size, defaultValue = 8)
    let seqLen = args.GetResult(InspectArgs.Seq_Len, defaultValue = config.Context)
    let optimizer = args.GetResult(InspectArgs.Optimizer, defaultValue = "adamw")
    let precision = args.GetResult(InspectArgs.Precision, defaultValue = "fp32")
    let report = Models.ModelInspection.Of(config, optimizer, precision, batch, seqLen, (device = "cpu"))
    printfn "%s: %s" (args.GetResult InspectArgs.Model) (Models.ModelConfigs.Describe config)
    printfn ""
    printfn "%-18s %15s %7s %22s" "block" "parameters" "share" (sprintf "%s state (bytes)" optimizer)
    for KeyValue(block, count) in report.ParametersByBlock |> Seq.sortBy (fun kv -> kv.Key) do
        printfn "%-18O %15s %6.1f%% %22s" block (count.ToString "N0") (100.0 * float count / float report.Parameters)
            (report.OptimizerStateBytesByBlock[block].ToString "N0")
    printfn "%-18s %15s %7s %22s" "total" (report.Parameters.ToString "N0") "" (report.OptimizerStateBytes.ToString "N0")
    printfn ""
    printfn "Training memory estimate: batch %d x %d tokens, %s, %s, %s attention" batch seqLen precision optimizer
        (if device = "cpu" then "math (CPU)" else "fused (CUDA)")
    printfn "  weights (fp32)       %s" (mib report.WeightBytes)
    printfn "  gradients (fp32)     %s" (mib report.GradientBytes)
    printfn "  optimizer state      %s" (mib report.OptimizerStateBytes)
    printfn "  activations          %s" (mib report.ActivationBytes)
    printfn "  total                %s" (mib report.TotalBytes)
    0

let doctor (args: ParseResults<DoctorArgs>) =
    let line = TorchRuntime.ComputeCheck()
    if not (args.Contains DoctorArgs.Quiet) then printfn "%s" line
    0
