module BlockwiseLR.Cli.Program

open System
open System.IO
open Argu
open BlockwiseLR
open BlockwiseLR.Cli.Arguments

/// "blr", or "blr (rank R)" in a data-parallel run, where every rank may speak.
let private speaker () =
    let launch = Distributed.LaunchInfo.FromEnvironment()

    if launch.WorldSize > 1 then
        sprintf "blr (rank %d)" launch.Rank
    else
        "blr"

let private fail (code: int) (message: string) =
    eprintfn "%s: %s" (speaker ()) message
    code

let mutable private everyRankFails = false

/// A failure every rank of a data-parallel run meets alike (it follows from the command line they share, or
/// from a check they made together): said once, by rank 0.
let private failOnce (code: int) (message: string) =
    everyRankFails <- true
    // The other ranks end quietly with 0, so that no launcher kills rank 0 before it has spoken; the run's exit
    // code is rank 0's.
    if Distributed.LaunchInfo.FromEnvironment().Rank = 0 then
        eprintfn "blr: %s" message
        code
    else
        0

/// The last resort for a failure nothing else explains: one line naming a log file (under the system temp
/// folder, never the output folder) that holds the whole trace.
let private crash (e: exn) =
    let log =
        Path.Combine(
            Path.GetTempPath(),
            sprintf "blr-error-%s-%d.log" (DateTime.UtcNow.ToString "yyyyMMdd-HHmmss") Environment.ProcessId
        )

    let firstLine (text: string) =
        text.Split('\n', StringSplitOptions.RemoveEmptyEntries).[0].Trim()

    try
        File.WriteAllText(log, sprintf "blr %s\n%O\n" (String.Join(" ", Environment.GetCommandLineArgs())) e)
        fail 1 (sprintf "internal error: %s (%s); the trace is in %s" (firstLine e.Message) (e.GetType().Name) log)
    with _ ->
        fail
            1
            (sprintf "internal error: %s (%s); no trace log could be written" (firstLine e.Message) (e.GetType().Name))

/// The flags of the running subcommand.
let mutable private flags: string list = []

/// Library property names whose flag has another name, for the subcommands that do not train (prepare, eval,
/// sample, ...); training options go through OptionFlags.table.
let private flagAliases =
    Map
        [
            "outputDirectory", "out"
            "inputs", "input"
            "jsonField", "field"
            "parquetColumn", "column"
        ]

/// The flag of the running subcommand that sets a library option: a training option ("Schedule.Lr") through
/// OptionFlags.table, another subcommand's property ("SeqLen") by its name.
let private flagOf (option: string) =
    match OptionFlags.flagOfName flags option with
    | Some flag -> Some flag
    | None ->
        let key = Commands.optionKey option
        let key = flagAliases.TryFind key |> Option.defaultValue key

        flags
        |> List.tryFind (fun flag -> Commands.optionKey (flag.TrimStart('-').Replace('-', '_')) = key)

/// A library text with the options it names said as this subcommand's flags: training options ("Optimizer.Ratios")
/// through the table, and the plain property names `named` accepts; words inside paths are left alone.
let private inFlags (named: string -> bool) (text: string) =
    let text = OptionFlags.inFlags flags text

    Text.RegularExpressions.Regex.Replace(
        text,
        @"(?<![/\w.-])[A-Z][a-z]+(?:[A-Z][a-z0-9]+)*(?![/\w.-])",
        fun m -> (if named m.Value then flagOf m.Value else None) |> Option.defaultValue m.Value
    )

let private version () =
    printfn "blr %s" (typeof<BlockRatios>.Assembly.GetName().Version.ToString 3)

/// An invalid option in the user's terms: the flag where the command line has one, the config key where the
/// value came from a config file, else the library's own message.
let private describe (e: InvalidOptionException) =
    let value = if isNull e.Value then "" else " " + e.Value
    let path = OptionFlags.pathOfName e.Option
    let fromFile = isNull e.ConfigFile && not (Commands.commandLineKeys.Contains path)

    let file =
        match e.ConfigFile with
        | null -> (if fromFile then Commands.configFile else None)
        | f -> Some f

    match file, flagOf e.Option with
    | Some source, _ -> sprintf "%s: %s%s: %s" source path (if isNull e.Value then "" else " = " + e.Value) e.Problem
    | None, Some flag -> sprintf "%s%s: %s" flag value (inFlags (fun _ -> true) e.Problem)
    | None, None -> e.Message

/// Every numeric flag given, checked against its range in the core's table (what --help shows) before the
/// command does any work.
let private checkRanges (args: ParseResults<'T>) =
    for a in args.GetAllResults() do
        let flag = args.Parser.GetArgumentCaseInfo(a).Name.Value

        match Reflection.FSharpValue.GetUnionFields(a, typeof<'T>) with
        | _, [| value |] ->
            let number =
                match value with
                | :? int as x -> Some(float x)
                | :? int64 as x -> Some(float x)
                | :? uint64 as x -> Some(float x)
                | :? float as x -> Some x
                | _ -> None

            match number |> Option.map (Core.OptionRanges.check flag) with
            | Some(Error problem) ->
                let text =
                    match value with
                    | :? float as x -> x.ToString("R", Globalization.CultureInfo.InvariantCulture)
                    | other -> string other

                raise (Commands.CliError(sprintf "%s %s: %s" flag text problem))
            | _ -> ()
        | _ -> ()

/// The values of the running subcommand's flags, for naming the flag a path came from.
let mutable private flagValues: (string * string) list = []

/// The flag whose value is `path`, if any.
let private flagOfPath (path: string) =
    let full (p: string) =
        try
            Path.GetFullPath(p).TrimEnd('/')
        with _ ->
            p

    let target = full path

    flagValues
    |> List.tryFind (fun (_, value) -> full value = target)
    |> Option.map (fun (flag, value) -> sprintf "%s %s" flag value)

let private run (args: ParseResults<'T>) (command: ParseResults<'T> -> int) =
    flags <- args.Parser.GetArgumentCases() |> List.map (fun c -> c.Name.Value)
    checkRanges args

    flagValues <-
        [
            for a in args.GetAllResults() do
                match Reflection.FSharpValue.GetUnionFields(a, typeof<'T>) with
                | _, [| :? string as value |] -> yield args.Parser.GetArgumentCaseInfo(a).Name.Value, value
                | _ -> ()
        ]

    command args

/// Argu's refusal of a command line in blr's one line: the flag (and the value it could not read) first, then what
/// it takes (a whole number or a number, in its range from the core's table) and where the help is.
let private arguLine (parser: ArgumentParser<BlrArgs>) (argv: string[]) (e: ArguParseException) =
    let first = e.Message.Split('\n').[0].Trim()

    let first =
        if first.StartsWith "ERROR: " then
            first.Substring 7
        else
            first

    let sub =
        parser.GetSubCommandParsers()
        |> List.tryFind (fun p ->
            p.ParentInfo
            |> Option.exists (fun c -> c.CommandLineNames.Value |> List.exists (fun n -> Array.contains n argv)))

    let name =
        sub
        |> Option.bind (fun p -> p.ParentInfo)
        |> Option.map (fun c -> "blr " + c.Name.Value)
        |> Option.defaultValue "blr"

    let help = sprintf "see %s --help" name

    /// What the flag takes, from its field's type and the core's range table.
    let takes (flag: string) (what: string) =
        let field =
            sub
            |> Option.bind (fun p ->
                p.GetArgumentCases()
                |> List.tryFind (fun c -> List.contains flag c.CommandLineNames.Value))
            |> Option.bind (fun c -> c.UnionCaseInfo.GetFields() |> Array.tryHead)
            |> Option.map (fun f -> f.PropertyType)

        let bounds =
            Core.OptionRanges.tryFind flag
            |> Option.map (fun r -> " " + Core.OptionRanges.bounds r)
            |> Option.defaultValue ""

        let zero =
            Core.OptionRanges.tryFind flag
            |> Option.bind (fun r -> r.Zero)
            |> Option.map (sprintf "0 (%s) or ")
            |> Option.defaultValue ""

        let largest (max: string) =
            match Core.OptionRanges.tryFind flag |> Option.bind (fun r -> r.Max) with
            | Some _ -> ""
            | None -> sprintf " (at most %s)" max

        match field with
        | Some t when t = typeof<int> -> sprintf "a whole number%s%s" bounds (largest "2147483647")
        | Some t when t = typeof<int64> -> sprintf "a whole number%s%s" bounds (largest "9223372036854775807")
        | Some t when t = typeof<uint64> -> sprintf "a whole number%s%s" bounds (largest "18446744073709551615")
        | Some t when t = typeof<float> -> sprintf "%sa number%s" zero bounds
        | _ -> sprintf "<%s>" what

    let matching (pattern: string) =
        let m = Text.RegularExpressions.Regex.Match(first, pattern)
        if m.Success then Some m.Groups else None

    match matching @"^parameter '(?<flag>[^']+)' must be followed by <(?<what>[^>]+)>, but was '(?<value>.*)'\.$" with
    | Some g ->
        sprintf
            "%s %s: must be %s; %s"
            g.["flag"].Value
            g.["value"].Value
            (takes g.["flag"].Value g.["what"].Value)
            help
    | None ->
        match matching @"^argument '(?<flag>[^']+)' must be followed by <(?<what>[^>]+)>\.$" with
        | Some g -> sprintf "%s: give %s after it; %s" g.["flag"].Value (takes g.["flag"].Value g.["what"].Value) help
        | None ->
            match matching @"^missing argument '(?<flag>[^']+)'\.$" with
            | Some g -> sprintf "%s: is required; %s" g.["flag"].Value help
            | None ->
                match matching @"^unrecognized argument: '(?<flag>[^']+)'\.$" with
                | Some g ->
                    let kind = if sub.IsNone then "a command or option" else "an option"
                    sprintf "%s: not %s of %s; %s" g.["flag"].Value kind name help
                | None -> sprintf "%s (%s)" (first.TrimEnd('.')) help

let private dispatch (argv: string[]) =
    let parser = ArgumentParser.Create<BlrArgs>(programName = "blr")

    try
        let args = parser.ParseCommandLine(argv, raiseOnUsage = true)
        args.TryGetResult BlrArgs.Libtorch |> Option.iter TorchRuntime.UseLibTorch

        if args.Contains BlrArgs.Version then
            version ()
            0
        else
            match args.GetSubCommand() with
            | Schedule a -> run a Commands.schedule
            | Blocks a -> run a Commands.blocks
            | Prepare a -> run a Commands.prepare
            | Train a -> run a Commands.train
            | Demo a -> run a Commands.demo
            | Compare a -> run a Commands.compare
            | Plot a -> run a Commands.plot
            | Sharpness a -> run a Commands.sharpness
            | Eval a -> run a Commands.eval
            | Sample a -> run a Commands.sample
            | Import_Hf a
            | Export_Hf a -> run a Commands.convertHf
            | Inspect a -> run a Commands.inspect
            | Doctor a -> run a Commands.doctor
            | Check_Fixtures a -> run a Commands.checkFixtures
            | Version
            | Libtorch _ ->
                version ()
                0
    with
    | :? InvalidOptionException as e -> failOnce 2 (describe e)
    | Commands.CliError message -> failOnce 2 message
    | :? ArguParseException as e when e.ErrorCode = ErrorCode.HelpText ->
        printfn "%s" e.Message
        0
    | :? ArguParseException as e -> failOnce 2 (arguLine parser argv e)
    | :? TorchUnavailableException as e -> fail 3 (e.Message.Replace("TorchRuntime.UseLibTorch", "--libtorch DIR"))
    | :? TrainingDivergedException as e -> failOnce 4 e.Message
    | :? Distributed.DistributedException as e when e.SameOnEveryRank -> failOnce 6 e.Message
    | :? Distributed.DistributedException as e -> fail 6 e.Message
    | e ->
        match Failures.describe (fun path -> flagOfPath path) e with
        | Some(code, line) -> fail code line
        | None ->
            match e with
            // The library says its fix in C#; the CLI's is a flag.
            | :? BlockPartitionException as e when e.UnmatchedNames.Count > 0 ->
                fail
                    2
                    (sprintf
                        "%d parameter(s) match no block rule: %s. Add --block-rule PATTERN=BLOCK (blocks: %s)"
                        e.UnmatchedNames.Count
                        (String.Join(", ", e.UnmatchedNames))
                        Core.BlockKind.knownKeys)
            // .NET appends " (Parameter 'name')" to an argument's message: the CLI's line names no C# argument.
            | :? ArgumentException as e when not (isNull e.ParamName) ->
                fail 2 (e.Message.Replace(sprintf " (Parameter '%s')" e.ParamName, ""))
            | :? FormatException
            | :? ArgumentException
            | :? BlockPartitionException
            | :? InvalidDataException -> fail 2 e.Message
            | :? DataInputException as e -> fail 2 (inFlags (fun word -> Seq.contains word e.Options) e.Message)
            | e -> crash e

[<EntryPoint>]
let main argv =
    let code = dispatch argv

    // Under `blr train --nproc` on the CPU: this rank ended by itself, with this code; the
    // launcher takes a rank that leaves none for one that died without a word (killed, out of memory).
    match Launch.statusFolder () with
    | None -> ()
    | Some folder ->
        try
            File.WriteAllText(Launch.exitFile folder (Distributed.LaunchInfo.FromEnvironment().Rank), string code)
        with _ ->
            ()

    // A rank that fails alone ends the whole run (the others would wait for it in their next collective); a
    // failure every rank met alike ends each of them cleanly.
    match Distributed.ProcessGroup.Current with
    | null -> ()
    | group when code <> 0 && code <> 130 && group.WorldSize > 1 && not everyRankFails -> group.Abort code
    | group -> group.Dispose()

    code
