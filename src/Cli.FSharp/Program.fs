module BlockwiseLR.Cli.Program

open System
open System.IO
open Argu
open BlockwiseLR
open BlockwiseLR.Cli.Arguments

let private fail (code: int) (message: string) =
    eprintfn "blr: %s" message
    code

[<EntryPoint>]
let main argv =
    let parser = ArgumentParser.Create<BlrArgs>(programName = "blr")
    try
        let args = parser.ParseCommandLine(argv, raiseOnUsage = true)
        args.TryGetResult BlrArgs.Libtorch |> Option.iter (fun dir -> TorchRuntime.LibTorchDirectory <- dir)
        match args.GetSubCommand() with
        | Schedule a -> Commands.schedule a
        | Blocks a -> Commands.blocks a
        | Prepare a -> Commands.prepare a
        | Train a -> Commands.train a
        | Demo a -> Commands.demo a
        | Compare a -> Commands.compare a
        | Plot a -> Commands.plot a
        | Sharpness a -> Commands.sharpness a
        | Eval a -> Commands.eval a
        | Sample a -> Commands.sample a
        | Import_Hf a
        | Export_Hf a -> Commands.convertHf a
        | Inspect a -> Commands.inspect a
        | Doctor a -> Commands.doctor a
        | Version
        | Libtorch _ -> printfn "blr %s" (typeof<BlockRatios>.Assembly.GetName().Version.ToString 3); 0
    with
    | :? ArguParseException as e when e.ErrorCode = ErrorCode.HelpText -> printfn "%s" e.Message; 0
    | :? ArguParseException as e -> fail 2 (e.Message.Split('\n').[0] + " (see blr --help)")
    | :? TorchUnavailableException as e -> fail 3 e.Message
    | :? FormatException as e -> fail 2 e.Message
    | :? ArgumentException as e -> fail 2 e.Message
    | :? BlockPartitionException as e -> fail 2 e.Message
    | :? InvalidDataException as e -> fail 2 e.Message
    | :? Data.DataInputException as e -> fail 2 e.Message
    | :? Training.TrainingDivergedException as e -> fail 4 e.Message
    | :? FileNotFoundException as e -> fail 2 (sprintf "%s: file not found" e.FileName)
    | :? DirectoryNotFoundException as e -> fail 2 e.Message
