/// Each subcommand: read its parsed arguments, call the facade, print.
module BlockwiseLR.Cli.Commands

open System
open System.IO
open Argu
open Spectre.Console
open BlockwiseLR
open BlockwiseLR.Cli.Arguments

/// A command-line mistake the CLI itself found: printed as one line, exit 2.
exception CliError of string

let private blockColumns = Enum.GetValues<Block>() |> Array.ofSeq

let private lr (value: float) =
    value.ToString("0.000e+00", Globalization.CultureInfo.InvariantCulture)

let private shape (dims: int64[]) =
    "(" + (dims |> Array.map string |> String.concat ", ") + ")"

let private defaults = PretrainOptions.Defaults

/// A choice given on the command line, read by the library's one parser of its names.
let private choice<'T when 'T: struct and 'T: (new: unit -> 'T) and 'T :> ValueType and 'T :> Enum>
    (flag: string)
    (text: string)
    : 'T =
    try
        OptionNames.Parse<'T> text
    with :? FormatException as e ->
        raise (CliError(sprintf "%s %s: %s" flag text e.Message))

let private device (text: string) =
    try
        ComputeDevice.Parse text
    with :? FormatException as e ->
        raise (CliError(sprintf "--device %s: %s" text e.Message))

/// The --device of a command, the CPU when it has none.
let private deviceOrCpu (text: string option) =
    text |> Option.map device |> Option.defaultValue ComputeDevice.Cpu

let schedule (args: ParseResults<ScheduleArgs>) =
    let total = args.GetResult ScheduleArgs.Steps

    // Fixed ratios only (auto ratios are set during training): the paper's unless given.
    let ratios =
        BlockRatios.Parse(args.GetResult(ScheduleArgs.Ratios, defaultValue = string BlockRatios.Paper))

    if ratios.IsAuto then
        raise (
            CliError
                "--ratios auto: auto ratios are set from measured sharpness during training; blr schedule shows fixed \
                 ratios (paper, uniform or a map)"
        )

    let floor = args.TryGetResult ScheduleArgs.Floor |> Option.toNullable

    let kind =
        args.TryGetResult ScheduleArgs.Schedule
        |> Option.map (choice<LrSchedule> "--schedule")
        |> Option.defaultValue defaults.Schedule.Kind

    let plan =
        BlockSchedule.Create(
            kind,
            args.GetResult(ScheduleArgs.Lr, defaultValue = defaults.Schedule.Lr),
            args.TryGetResult ScheduleArgs.Warmup |> Option.toNullable,
            total,
            ratios,
            not (args.Contains ScheduleArgs.Untied),
            floor,
            args.Contains ScheduleArgs.Alpha
        )

    printfn
        "Per-block LR, %s schedule: base LR %g, shared floor %g, warmup %d of %d steps, ratios %O (%s head)"
        (OptionNames.Format kind)
        plan.BaseLr
        plan.FloorLr
        plan.WarmupSteps
        plan.TotalSteps
        ratios
        (if plan.TiedHead then "tied" else "untied")

    printfn
        "%8s %s"
        "step"
        (blockColumns
         |> Array.map (fun b -> sprintf "%11s" (Blocks.Key b))
         |> String.concat "")

    for step in plan.Milestones(args.GetResult(ScheduleArgs.Points, defaultValue = 10)) do
        let lrs =
            blockColumns
            |> Array.map (fun b -> sprintf "%11s" (lr (plan.LrAt(b, step))))
            |> String.concat ""

        printfn "%8d %s" step lrs

    0

let blocks (args: ParseResults<BlocksArgs>) =
    let file = args.GetResult BlocksArgs.File

    if Directory.Exists file then
        raise (
            CliError(
                sprintf
                    "%s: is a folder; give a .safetensors file (e.g. %s)"
                    file
                    (Path.Combine(file, "model.safetensors"))
            )
        )

    let fromFile =
        args.TryGetResult BlocksArgs.Block_Rules
        |> Option.fold
            (fun (rules: BlockRules) path -> rules.WithRulesText(File.ReadAllText path, path))
            BlockRules.Default
    // Later --block-rule options take precedence over earlier ones and over the file.
    let rules =
        args.GetResults BlocksArgs.Block_Rule
        |> List.fold (fun (rules: BlockRules) text -> rules.WithRulesText(text, "--block-rule")) fromFile

    // The model's parameters, as inspect counts them (not the buffers or zero biases a file may also hold).
    let parameters =
        Models.HfFormat.ParameterEntries file
        |> Seq.map (fun e -> ParameterShape(e.Name, e.Shape))
        |> Array.ofSeq

    let placed = rules.Partition parameters

    for p in placed do
        let where =
            p.Slices
            |> Seq.map (fun s ->
                if s.Dim < 0 then
                    string s.Block
                else
                    sprintf "%O[dim %d: %d..%d)" s.Block s.Dim s.Start (s.Start + s.Length))
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

    let defaults = PrepareOptions(OutputDirectory = args.GetResult PrepareArgs.Out)

    // The library can tell only a fraction other than the default beside --val-tokens.
    match args.TryGetResult PrepareArgs.Val_Fraction, args.TryGetResult PrepareArgs.Val_Tokens with
    | Some fraction, Some tokens when fraction >= 0.0 && fraction < 1.0 ->
        raise (
            CliError(
                sprintf
                    "--val-fraction %s: give --val-fraction or --val-tokens (%d), not both: they are two ways to size \
                     the val split"
                    (fraction.ToString("R", Globalization.CultureInfo.InvariantCulture))
                    tokens
            )
        )
    | _ -> ()

    let options =
        PrepareOptions(
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
            Overwrite = args.Contains PrepareArgs.Overwrite,
            Restart = args.Contains PrepareArgs.Restart,
            Tokenizer = args.GetResult(PrepareArgs.Tokenizer, defaultValue = defaults.Tokenizer)
        )

    // Ctrl-C or SIGTERM ends prepare where it is (as a kill would: the next run of the same command resumes from the
    // last recorded block); it says so in one line.
    let interrupted (_: Runtime.InteropServices.PosixSignalContext) =
        eprintfn
            "blr: prepare interrupted; run the same command again to resume where it stopped (--restart starts over)"

    use _int =
        Runtime.InteropServices.PosixSignalRegistration.Create(Runtime.InteropServices.PosixSignal.SIGINT, interrupted)

    use _term =
        Runtime.InteropServices.PosixSignalRegistration.Create(Runtime.InteropServices.PosixSignal.SIGTERM, interrupted)

    let result =
        Spectre.Console.AnsiConsole
            .Progress()
            .Start(fun context ->
                let task = context.AddTask("tokenizing", maxValue = 1.0)

                let report (p: PrepareProgress) =
                    task.MaxValue <- float p.Sources
                    task.Value <- float p.SourcesDone

                    task.Description <-
                        sprintf
                            "tokenizing: %s documents, %s tokens"
                            (p.Documents.ToString "N0")
                            (p.Tokens.ToString "N0")

                ShardPreparer.Run(options, Progress<PrepareProgress>(report)))

    if not (isNull result.StaleStaging) then
        printfn "%s" result.StaleStaging

    if not (isNull result.Reused) then
        printfn "%s" (result.Reused.Replace("set Overwrite", "give --overwrite"))

    printfn
        "%s documents -> %s train + %s val tokens (%d of %d chunks in val), %d shard(s) in %s"
        (result.Documents.ToString "N0")
        (result.TrainTokens.ToString "N0")
        (result.ValTokens.ToString "N0")
        result.ValChunks
        result.Chunks
        result.Shards.Count
        result.Directory

    if isNull result.Reused then
        printfn
            "%.1f s, %s tokens/s with %d thread(s)"
            result.Seconds
            (result.TokensPerSecond.ToString "N0")
            options.Threads

    0

/// When the last step of this process ended, and the longest time between two step ends (a whole iteration:
/// the step, its evaluation and checkpoint) so far; the watchdog below reads them.
let mutable private lastStepEnded = DateTime.UtcNow
let mutable private longestIteration = TimeSpan.Zero

/// Under `blr train --nproc` (BLR_LAUNCH_STATUS): the file that tells the launcher this rank can take its stop signal,
/// written after the first step (the stop handler is registered, the training under way) and removed when training
/// ends. A signal that comes earlier waits in the launcher: the .NET default would kill the rank.
let private launchReady =
    Launch.statusFolder ()
    |> Option.map (fun folder -> Launch.readyFile folder Environment.ProcessId)

let mutable private saidReady = false

/// Marks a finished step.
let private stepped (_: StepReport) =
    let now = DateTime.UtcNow
    longestIteration <- max longestIteration (now - lastStepEnded)
    lastStepEnded <- now

    if not saidReady then
        saidReady <- true

        launchReady
        |> Option.iter (fun file ->
            try
                File.WriteAllText(file, "")
            with _ ->
                ())

/// After a stop signal in a data-parallel run: the ranks agree to stop at the end of the step under way and
/// checkpoint. A rank that sees no step end within max(60 s, three times its longest iteration) is waiting for a
/// rank that is gone: it exits instead of hanging. (mpirun usually ends such ranks sooner; this is for launchers
/// that do not.)
let private watchdog (signalled: DateTime) =
    let patience = max (TimeSpan.FromSeconds 60.0) (longestIteration * 3.0)

    Threading
        .Thread(
            (fun () ->
                while lastStepEnded < signalled do
                    if DateTime.UtcNow - signalled > patience then
                        let rank = Distributed.LaunchInfo.FromEnvironment().Rank

                        eprintfn
                            "blr (rank %d): no step ended within %.0f s of the stop signal: another rank has failed; \
                             exiting without a checkpoint (the last one stands)"
                            rank
                            patience.TotalSeconds
                        // At once: MPI_Finalize (an exit handler) would wait for the rank that is gone.
                        Launch.exitNow 6

                    Threading.Thread.Sleep 100),
            IsBackground = true
        )
        .Start()

/// Runs work with its runs' progress shown (RunProgress: a live bar per run on a terminal, plain lines when output
/// is redirected); `work` calls `starting` with each run's name before the run. Ctrl-C (SIGINT) or SIGTERM (what
/// mpirun forwards to its ranks) asks the trainer to checkpoint and stop. Ranks other than 0 of a data-parallel run
/// show nothing.
let private withTraining (work: Action<string> -> IProgress<TrainProgress> -> Threading.CancellationToken -> 'T) =
    use cancel = new Threading.CancellationTokenSource()
    let world = Distributed.LaunchInfo.FromEnvironment().WorldSize

    let stop (context: Runtime.InteropServices.PosixSignalContext) =
        context.Cancel <- true

        if world > 1 && not cancel.IsCancellationRequested then
            watchdog DateTime.UtcNow

        cancel.Cancel()

    use _int =
        Runtime.InteropServices.PosixSignalRegistration.Create(Runtime.InteropServices.PosixSignal.SIGINT, stop)

    use _term =
        Runtime.InteropServices.PosixSignalRegistration.Create(Runtime.InteropServices.PosixSignal.SIGTERM, stop)

    try
        RunProgress.show (Distributed.LaunchInfo.FromEnvironment().Rank = 0) (fun starting progress ->
            work starting progress cancel.Token)
    finally
        // From here on this rank ends by itself: the launcher sends it no signal.
        launchReady
        |> Option.iter (fun file ->
            try
                File.Delete file
            with _ ->
                ())

/// The camelCase name of a subcommand's argument (Batch_Size -> batchSize): how the commands that do not train
/// (prepare, eval, sample, ...) name their library options.
let optionKey (caseName: string) =
    let parts = caseName.Split('_', StringSplitOptions.RemoveEmptyEntries)
    let first (f: char -> char) (p: string) = string (f p.[0]) + p.Substring 1

    first Char.ToLowerInvariant parts.[0]
    + (parts.[1..] |> Array.map (first Char.ToUpperInvariant) |> String.concat "")

/// The options that parsed arguments set, as (option path, value) pairs for PretrainOptions.With, each flag read
/// through OptionFlags.table (repeated --set values together); arguments that set no option (--config, --nproc,
/// compare's --optimizers, ...) are left out.
let private optionValues
    (parser: ArgumentParser<'T>)
    (results: 'T list)
    : Collections.Generic.KeyValuePair<string, obj> list =
    let settings =
        [
            for a in results do
                match OptionFlags.pathOf (parser.GetArgumentCaseInfo(a).Name.Value) with
                | Some path ->
                    match Reflection.FSharpValue.GetUnionFields(a, typeof<'T>) with
                    | _, [||] -> yield path, box true
                    | _, [| value |] -> yield path, value
                    | _ -> ()
                | None -> ()
        ]

    let overrides =
        settings
        |> List.filter (fun (path, _) -> path = "model.overrides")
        |> List.map (snd >> string)

    [
        if not overrides.IsEmpty then
            yield Collections.Generic.KeyValuePair("model.overrides", box (Array.ofList overrides))
        for path, value in settings do
            if path <> "model.overrides" then
                yield Collections.Generic.KeyValuePair(path, value)
    ]

/// The config file of the running command and the options its command line gave (option paths, e.g. schedule.lr): an
/// invalid option that did not come from the command line is reported against the file, not a flag.
let mutable configFile: string option = None
let mutable commandLineKeys: Set<string> = Set.empty

/// The options of `train`: its config file, then its command line.
let private trainOptions (args: ParseResults<TrainArgs>) =
    let values = optionValues args.Parser (args.GetAllResults())
    commandLineKeys <- values |> List.map (fun kv -> kv.Key) |> Set.ofList |> Set.add "config"
    configFile <- args.TryGetResult TrainArgs.Config

    let fromFile =
        configFile
        |> Option.map PretrainOptions.FromJsonFile
        |> Option.defaultValue defaults

    fromFile.With(values)

/// This command line with --resume latest in place of any --resume or --overwrite: what continues an interrupted
/// run.
let private resumeCommand () =
    let args = Environment.GetCommandLineArgs() |> Array.skip 1 |> List.ofArray

    let rec keep (args: string list) =
        match args with
        | "--resume" :: _ :: rest -> keep rest
        | "--overwrite" :: rest -> keep rest
        | a :: rest -> a :: keep rest
        | [] -> []

    let quote (a: string) =
        if
            a = ""
            || a |> Seq.exists (fun c -> Char.IsWhiteSpace c || "'\"$`\\;&|<>()*?".Contains c)
        then
            "'" + a.Replace("'", "'\\''") + "'"
        else
            a

    "blr "
    + String.Join(" ", keep args @ [ "--resume"; "latest" ] |> List.map quote)

let rec train (args: ParseResults<TrainArgs>) =
    let launched = Distributed.LaunchInfo.FromEnvironment()

    match args.TryGetResult TrainArgs.Nproc with
    | Some n when n < 1 -> raise (CliError(sprintf "--nproc %d: must be >= 1" n))
    | Some n when launched.WorldSize > 1 && n <> launched.WorldSize ->
        raise (
            CliError(
                sprintf
                    "--nproc %d: this process was launched as one of %d; leave --nproc out under mpirun or a launcher"
                    n
                    launched.WorldSize
            )
        )
    | Some n when n > 1 && launched.WorldSize = 1 ->
        match Launch.start n (trainOptions args).Training.Device.IsCuda with
        | Launch.Exited code -> code
        // The ranks stopped as agreed and rank 0 wrote its checkpoint: the launcher says how to go on.
        | Launch.Stopped ->
            eprintfn "blr: interrupted; rank 0 wrote a checkpoint; resume with: %s" (resumeCommand ())
            130
        | Launch.Killed ->
            eprintfn
                "blr: interrupted again: the ranks were killed without a checkpoint; resume from the last one with: %s"
                (resumeCommand ())

            130
    | _ -> trainHere args launched

and private trainHere (args: ParseResults<TrainArgs>) (launched: Distributed.LaunchInfo) =
    let options = trainOptions args
    let name = OptionNames.Format options.Optimizer.Kind

    let result =
        withTraining (fun starting progress cancel ->
            starting.Invoke name

            Trainer(options)
                .WithProgress(progress)
                .OnNote(fun note -> eprintfn "note: %s" note)
                .OnStep(stepped)
                .Run(cancel))
    // Under `--nproc` the launcher reports the interruption: ranks that stopped as agreed end cleanly.
    let interrupted =
        if result.Interrupted && isNull (Environment.GetEnvironmentVariable "BLR_LAUNCHED") then
            130
        else
            0

    if launched.Rank <> 0 then
        interrupted
    else
        let summary = Table().AddColumn("").AddColumn(name)

        let row (name: string) (value: string) =
            summary.AddRow(Markup.Escape name, Markup.Escape value) |> ignore

        row "steps" (sprintf "%d%s" result.Steps (if result.Interrupted then " (interrupted)" else ""))
        // A value the run did not measure (no evaluation, no timed step) is "none".
        let measured (format: float -> string) (value: Nullable<float>) =
            if value.HasValue then format value.Value else "none"

        row "final val loss" (measured (sprintf "%.4f") result.FinalValLoss)
        row "best val loss" (measured (sprintf "%.4f") result.BestValLoss)
        row "tokens/s" (measured (fun x -> x.ToString "N0") result.TokensPerSecond)
        row "ms/step" (measured (sprintf "%.1f") result.MillisecondsPerStep)

        row
            "optimizer state"
            (sprintf
                "%s bytes%s"
                (result.OptimizerStateBytes.ToString "N0")
                (if launched.WorldSize > 1 then " (rank 0)" else ""))

        if launched.WorldSize > 1 then
            row "processes" (string launched.WorldSize)

        row "run folder" result.RunDirectory
        row "checkpoint" (string result.LastCheckpoint)
        AnsiConsole.Write summary

        if interrupted = 130 then
            eprintfn
                "blr: interrupted after step %d, checkpoint %s; resume with: %s"
                result.Steps
                result.LastCheckpoint
                (resumeCommand ())

        interrupted

/// --device and --threads of a command that computes, resolved once: libtorch loaded (CUDA first where asked
/// for), the device checked (ComputeDevice.Use), then libtorch's CPU threads.
let private useDevice (threads: int option) (onDevice: string option) =
    // --threads is in range: Program checks every numeric flag against the core's table first.
    let chosen = deviceOrCpu onDevice
    let resolved = chosen.Use()
    threads |> Option.iter TorchSharp.torch.set_num_threads
    chosen, resolved

let eval (args: ParseResults<EvalArgs>) =
    let _, on =
        useDevice (args.TryGetResult EvalArgs.Threads) (args.TryGetResult EvalArgs.Device)

    let result =
        Training.Evaluation.Run(
            args.GetResult EvalArgs.Model_Dir,
            args.TryGetResult EvalArgs.Data |> Option.toObj,
            args.TryGetResult EvalArgs.Text |> Option.toObj,
            args.GetResult(EvalArgs.Seq_Len, defaultValue = 256),
            args.GetResult(EvalArgs.Batch_Size, defaultValue = 8),
            args.GetResult(EvalArgs.Windows, defaultValue = 256L),
            on
        )

    printfn
        "%s: loss %.4f, perplexity %.2f over %d windows (%s tokens)"
        result.Model
        result.Loss
        result.Perplexity
        result.Windows
        (result.Tokens.ToString "N0")

    0

let sample (args: ParseResults<SampleArgs>) =
    let _, on =
        useDevice (args.TryGetResult SampleArgs.Threads) (args.TryGetResult SampleArgs.Device)

    let text =
        Training.TextGenerator.Generate(
            args.GetResult SampleArgs.Model_Dir,
            args.GetResult(SampleArgs.Prompt, defaultValue = ""),
            args.GetResult(SampleArgs.Max_Tokens, defaultValue = 100),
            args.GetResult(SampleArgs.Temperature, defaultValue = 0.8),
            args.GetResult(SampleArgs.Top_K, defaultValue = 50),
            args.GetResult(SampleArgs.Top_P, defaultValue = 0.95),
            args.GetResult(SampleArgs.Seed, defaultValue = 1337UL),
            on,
            (fun note -> eprintfn "note: %s" note)
        )

    printfn "%s" text
    0

/// import-hf and export-hf: read a model (HF folder, checkpoint or run), write it in Hugging Face format.
/// The tokenizer files a model folder's blr-tokenizer.json records, with that file: what an export wrote there (none
/// when it is absent or unreadable, so that a file blr did not write is never removed).
let private tokenizerFilesOfModel (folder: string) =
    let path = Path.Combine(folder, Data.TextTokenizers.ModelFile)

    if not (File.Exists path) then
        []
    else
        let files =
            try
                match Text.Json.JsonSerializer.Deserialize<Data.TokenizerRecord>(File.ReadAllText path) with
                | null -> []
                | record when isNull record.Files -> []
                | record -> List.ofSeq record.Files
            with _ ->
                []

        Data.TextTokenizers.ModelFile
        :: (files |> List.filter (fun f -> not (isNull f) && Path.GetFileName f = f))

let convertHf (args: ParseResults<HfArgs>) =
    let out = args.GetResult HfArgs.Out

    if
        not (args.Contains HfArgs.Overwrite)
        && [ "config.json"; "model.safetensors" ]
           |> List.exists (fun f -> File.Exists(Path.Combine(out, f)))
    then
        raise (CliError(sprintf "--out %s: already holds a model; choose another folder or pass --overwrite" out))

    use model = Training.ModelLocator.Load(args.GetResult HfArgs.From)
    // What an earlier export wrote there: its tokenizer files go unless this one writes them again.
    let earlier =
        if args.Contains HfArgs.Overwrite then
            tokenizerFilesOfModel out
        else
            []

    // The tokenizer travels with the model (a folder without the file is GPT-2's): read and checked before --out is
    // written, so that a damaged one leaves no half-written folder.
    let source = Training.ModelLocator.Resolve(args.GetResult HfArgs.From)
    let tokenizerFile = Path.Combine(source, Data.TextTokenizers.ModelFile)

    let record =
        if File.Exists tokenizerFile then
            let record = Data.TextTokenizers.ReadModelRecord tokenizerFile

            match Data.TextTokenizers.Load(record, source) with
            | :? IDisposable as d -> d.Dispose()
            | _ -> ()

            Some record
        else
            None

    Models.HfFormat.Save(model, out)

    let written =
        match record with
        | Some r ->
            Data.TextTokenizers.WriteForModel(out, r, source)
            tokenizerFilesOfModel out
        | None -> []

    for stale in List.except written earlier do
        File.Delete(Path.Combine(out, stale))

    printfn "%s -> %s (%s)" (args.GetResult HfArgs.From) out (Models.ModelConfigs.Describe model.Config)
    0

let private commaList (text: string) =
    text.Split(',', StringSplitOptions.RemoveEmptyEntries ||| StringSplitOptions.TrimEntries)

let compare (args: ParseResults<CompareArgs>) =
    let common =
        defaults.With(
            Collections.Generic.KeyValuePair("run.out", box "runs/compare")
            :: optionValues args.Parser (args.GetAllResults())
        )

    let number (flag: string) (parse: string -> bool * 'T) (text: string) =
        match parse text with
        | true, v -> v
        | _ -> raise (CliError(sprintf "%s: '%s' is not a number" flag text))

    common.Training.Device.Use() |> ignore // before anything is written
    let compareDefaults = Reporting.CompareOptions(Common = common)

    let options =
        Reporting.CompareOptions(
            Common = common,
            Optimizers =
                (args.TryGetResult CompareArgs.Optimizers
                 |> Option.map (commaList >> Array.map (choice<OptimizerKind> "--optimizers"))
                 |> Option.defaultValue (Array.ofSeq compareDefaults.Optimizers)),
            Seeds =
                (args.TryGetResult CompareArgs.Seeds
                 |> Option.map (commaList >> Array.map (number "--seeds" UInt64.TryParse))
                 |> Option.defaultValue (Array.ofSeq compareDefaults.Seeds)),
            LrSweep =
                (args.TryGetResult CompareArgs.Lr_Sweep
                 |> Option.map (
                     commaList
                     >> Array.map (
                         number "--lr-sweep" (fun t ->
                             Double.TryParse(
                                 t,
                                 Globalization.NumberStyles.Float,
                                 Globalization.CultureInfo.InvariantCulture
                             ))
                     )
                 )
                 |> Option.defaultValue [||])
        )

    let report =
        withTraining (fun starting progress cancel -> Reporting.Comparison.Compare(options, starting, progress, cancel))

    printfn "%s" (report.Table())
    printfn "report %s, curves %s" report.Markdown report.Png
    0

let plot (args: ParseResults<PlotArgs>) =
    let runs = args.GetResults PlotArgs.Run

    let kinds =
        [
            args.Contains PlotArgs.Train
            args.Contains PlotArgs.Sharpness
            args.Contains PlotArgs.Noise_Scale
        ]
        |> List.filter id

    if kinds.Length > 1 then
        raise (CliError "--train, --sharpness and --noise-scale each draw another plot: give one of them")

    let png =
        if args.Contains PlotArgs.Sharpness then
            match runs with
            | [ run ] -> Reporting.Plots.SharpnessCurves(run, args.GetResult PlotArgs.Out)
            | _ -> raise (CliError "--sharpness plots one run: give one --run")
        elif args.Contains PlotArgs.Noise_Scale then
            match runs with
            | [ run ] -> Reporting.Plots.NoiseScaleCurves(run, args.GetResult PlotArgs.Out)
            | _ -> raise (CliError "--noise-scale plots one run: give one --run")
        else
            Reporting.Plots.Curves(runs |> Array.ofList, args.GetResult PlotArgs.Out, args.Contains PlotArgs.Train)

    printfn "wrote %s" png
    0

let sharpness (args: ParseResults<SharpnessArgs>) =
    let chosen, _ =
        useDevice (args.TryGetResult SharpnessArgs.Threads) (args.TryGetResult SharpnessArgs.Device)

    let steps =
        args.TryGetResult SharpnessArgs.Steps
        |> Option.map (
            commaList
            >> Array.map (fun t ->
                match Int32.TryParse t with
                | true, step -> step
                | _ -> raise (CliError(sprintf "--steps %s: '%s' is not a step number; give steps like 100,200" t t)))
        )
        |> Option.toObj

    let struct (rows, csv, png) =
        Reporting.SharpnessReport.Measure(
            args.GetResult SharpnessArgs.Run,
            args.GetResult SharpnessArgs.Data,
            steps,
            args.GetResult(SharpnessArgs.Batches, defaultValue = 4),
            args.GetResult(SharpnessArgs.Batch_Size, defaultValue = 8),
            args.GetResult(SharpnessArgs.Seq_Len, defaultValue = 128),
            args.Contains SharpnessArgs.Hutchinson,
            args.GetResult(SharpnessArgs.Seed, defaultValue = 1337UL),
            (fun s -> eprintfn "measuring %s" s),
            chosen,
            args.Contains SharpnessArgs.Preconditioned
        )

    let estimate (e: Estimate) =
        if isNull (box e) then
            ""
        else
            sprintf "%.4e +- %.1e" e.Mean e.StdErr

    printfn "%6s %-18s %24s %24s %24s" "step" "block" "proxy (+- se)" "hutchinson (+- se)" "preconditioned (+- se)"

    for r in rows do
        printfn
            "%6d %-18O %24s %24s %24s"
            r.Step
            r.Block
            (estimate r.Proxy)
            (estimate r.Hutchinson)
            (estimate r.Preconditioned)

    for step, group in rows |> Seq.groupBy (fun r -> r.Step) do
        for estimator in [ "proxy"; "hutchinson" ] do
            let hutchinson = estimator = "hutchinson"

            if not hutchinson || args.Contains SharpnessArgs.Hutchinson then
                let struct (order, matches) = Reporting.SharpnessReport.Ordering(group, hutchinson)

                printfn
                    "step %d, %s, flattest first: %s (%s the paper's S(Emb) < S(QK) < S(FFN) < S(VO) < S(Norm))"
                    step
                    estimator
                    (order |> Seq.map Blocks.Key |> String.concat " < ")
                    (if matches then "matches" else "differs from")

    printfn "wrote %s and %s" csv png
    0

let demo (args: ParseResults<DemoArgs>) =
    let options =
        Reporting.Comparison.DemoOptions(
            args.GetResult(DemoArgs.Out, defaultValue = "runs/demo"),
            args.Contains DemoArgs.Quick
        )

    let options =
        match args.TryGetResult DemoArgs.Threads with
        | Some n -> options.With([ Collections.Generic.KeyValuePair("training.threads", box n) ])
        | None -> options

    let options =
        match args.TryGetResult DemoArgs.Device with
        | Some d -> options.With([ Collections.Generic.KeyValuePair("training.device", box d) ])
        | None -> options

    // Before the corpus is prepared: a device that cannot be used leaves nothing behind.
    options.Training.Device.Use() |> ignore

    printfn
        "BlockwiseLR demo: %s on the built-in Gutenberg corpus, AdamW vs Blockwise AdamW with the paper's ratios vs \
         Blockwise AdamW with ratios from measured sharpness (auto), %d steps of %d x %d tokens each"
        options.Model.Name
        options.Training.Steps
        options.Training.BatchSize
        options.Training.SeqLen.Value

    let report =
        withTraining (fun starting progress cancel ->
            Reporting.Comparison.Run(options, Reporting.ComparisonArm.Demo, starting, progress, cancel))

    printfn "%s" (report.Table())
    printfn "report %s, curves %s" report.Markdown report.Png

    // The map from the committed batch-size sweep (docs/sweep): where the ratios pay and where they do not.
    match Reporting.SweepMap.Builtin() with
    | null -> ()
    | map ->
        printfn ""
        printfn "%s" (map.Table())
        let png = map.Draw(IO.Path.Combine(IO.Path.GetDirectoryName(report.Png), "map.png"))

        printfn
            "the map %s (from the committed sweep, docs/sweep/report.md; this run is one point on it, at %s tokens \
             per step)"
            png
            ((options.Training.BatchSize * options.Training.SeqLen.Value)
                .ToString("N0", Globalization.CultureInfo.InvariantCulture))

    0

let private mib (bytes: int64) =
    sprintf "%10.1f MiB" (float bytes / 1048576.0)

/// How the optimizer state of `inspect` spreads over `processes` ranks at ZeRO stage `zero`.
let private printSharding
    (config: ModelConfig)
    (optimizerKind: OptimizerKind)
    (report: Models.ModelInspection)
    processes
    zero
    cuda
    =
    let optimizer = OptionNames.Format optimizerKind
    let onCpu = not cuda

    if zero = 1 then
        let perRank =
            Models.ModelInspection.ShardedStateBytes(config, optimizerKind, processes, not onCpu)

        printfn ""

        printfn
            "ZeRO-1 over %d processes: %s state per rank (its part of every flat group; gradients and weights stay \
             whole)"
            processes
            optimizer

        perRank
        |> Seq.iteri (fun rank bytes ->
            printfn
                "  rank %-3d %18s bytes  %s  (%.1f%% of %s)"
                rank
                (bytes.ToString "N0")
                (mib bytes)
                (100.0 * float bytes / float report.OptimizerStateBytes)
                (mib report.OptimizerStateBytes))
    elif processes > 1 then
        printfn ""

        printfn
            "ZeRO-0 over %d processes: every rank keeps all %s of optimizer state (--zero 1 splits it)"
            processes
            (mib report.OptimizerStateBytes)

let inspect (args: ParseResults<InspectArgs>) =
    let overrides =
        args.GetAllResults() |> List.choose (fun a -> a.Override) |> Array.ofList

    let config = Models.ModelConfigs.Create(args.GetResult InspectArgs.Model, overrides)
    let onCpu = not (deviceOrCpu (args.TryGetResult InspectArgs.Device)).IsCuda
    let batch = args.GetResult(InspectArgs.Batch_Size, defaultValue = 8)
    let seqLen = args.GetResult(InspectArgs.Seq_Len, defaultValue = config.Context)

    let optimizerKind =
        args.TryGetResult InspectArgs.Optimizer
        |> Option.map (choice<OptimizerKind> "--optimizer")
        |> Option.defaultValue OptimizerKind.AdamW

    let precisionKind =
        args.TryGetResult InspectArgs.Precision
        |> Option.map (choice<Precision> "--precision")
        |> Option.defaultValue defaults.Training.Precision

    let optimizer = OptionNames.Format optimizerKind
    let precision = OptionNames.Format precisionKind

    let report =
        Models.ModelInspection.Of(config, optimizerKind, precisionKind, batch, seqLen, onCpu)

    let processes = args.GetResult(InspectArgs.Nproc, defaultValue = 1)
    let zero = args.GetResult(InspectArgs.Zero, defaultValue = 0)

    if processes < 1 then
        raise (CliError(sprintf "--nproc %d: must be >= 1" processes))

    if zero <> 0 && zero <> 1 then
        raise (CliError(sprintf "--zero %d: must be 0 or 1" zero))

    printfn "%s: %s" (args.GetResult InspectArgs.Model) (Models.ModelConfigs.Describe config)
    printfn ""
    printfn "%-18s %15s %7s %22s" "block" "parameters" "share" (sprintf "%s state (bytes)" optimizer)

    for KeyValue(block, count) in report.ParametersByBlock |> Seq.sortBy (fun kv -> kv.Key) do
        printfn
            "%-18O %15s %6.1f%% %22s"
            block
            (count.ToString "N0")
            (100.0 * float count / float report.Parameters)
            (report.OptimizerStateBytesByBlock[block].ToString "N0")

    printfn
        "%-18s %15s %7s %22s"
        "total"
        (report.Parameters.ToString "N0")
        ""
        (report.OptimizerStateBytes.ToString "N0")

    printfn ""

    printfn
        "Training memory estimate: batch %d x %d tokens, %s, %s, %s attention"
        batch
        seqLen
        precision
        optimizer
        (if onCpu then "math (CPU)" else "fused (CUDA)")

    printfn "  weights (fp32)       %s" (mib report.WeightBytes)
    printfn "  gradients (fp32)     %s" (mib report.GradientBytes)
    printfn "  optimizer state      %s" (mib report.OptimizerStateBytes)
    printfn "  activations          %s" (mib report.ActivationBytes)
    printfn "  total                %s" (mib report.TotalBytes)

    printSharding config optimizerKind report processes zero (not onCpu)
    0

/// Markdown tables of the fixture logits and of the optimizer golden trajectories on a device; exit 1 when a row
/// misses its bound or the golden file is missing.
let checkFixtures (args: ParseResults<CheckFixturesArgs>) =
    let on = deviceOrCpu (args.TryGetResult CheckFixturesArgs.Device)
    let rows = Reporting.FixtureCheck.Run(args.GetResult CheckFixturesArgs.Fixtures, on)
    printfn "| fixture | precision | max abs diff | relative L2 | loss (HF) | bound | result |"
    printfn "|---|---|---|---|---|---|---|"

    for r in rows do
        let bound =
            match r.Precision with
            | Precision.Fp32 -> "max <= 1e-4"
            | Precision.Tf32 -> "max <= 5e-3"
            | _ -> "rel <= 1%"

        printfn
            "| %s | %s | %.3e | %.3e | %.6f (%.6f) | %s | %s |"
            r.Fixture
            (OptionNames.Format r.Precision)
            r.MaxAbsDifference
            r.RelativeL2
            r.Loss
            r.ExpectedLoss
            bound
            (if r.Passed then "PASS" else "FAIL")

    let fixtures = args.GetResult CheckFixturesArgs.Fixtures

    let variants =
        [ for v in Reporting.FixtureCheck.Variants -> v ]
        @ [ for v in Reporting.FixtureCheck.LionMuonVariants -> v ]

    let missing =
        variants
        |> List.map Reporting.FixtureCheck.GoldenFileOf
        |> List.distinct
        |> List.map (fun f -> Path.Combine(fixtures, f))
        |> List.filter (File.Exists >> not)

    let trajectories =
        [
            for variant in variants do
                let golden = Path.Combine(fixtures, Reporting.FixtureCheck.GoldenFileOf variant)

                if File.Exists golden then
                    Reporting.FixtureCheck.Trajectory(
                        golden,
                        variant,
                        on,
                        bound = Reporting.FixtureCheck.BoundOf(variant, on)
                    )
        ]

    printfn ""

    if not trajectories.IsEmpty then
        printfn "| optimizer golden trajectory (6 steps) | max abs diff | bound | result |"
        printfn "|---|---|---|---|"

        for t in trajectories do
            printfn
                "| %s | %.3e | %.0e | %s |"
                t.Variant
                t.MaxAbsDifference
                t.Bound
                (if t.Passed then "PASS" else "FAIL")

    for golden in missing do
        printfn "No optimizer golden file (%s): its optimizer trajectories were not replayed." golden

    if
        rows |> Seq.forall (fun r -> r.Passed)
        && missing.IsEmpty
        && trajectories |> Seq.forall (fun t -> t.Passed)
    then
        0
    else
        1

let doctor (args: ParseResults<DoctorArgs>) =
    let line =
        TorchRuntime.ComputeCheck(deviceOrCpu (args.TryGetResult DoctorArgs.Device))

    if not (args.Contains DoctorArgs.Quiet) then
        printfn "%s" line

    0
