module BlockwiseLR.Core.Tests.Main

open System
open System.IO
open Expecto

/// Runs every test; when BLR_TEST_SUMMARY names a file, writes "passed failed" there (errored tests count
/// as failed) for build.fsx to add up across test runners.
[<EntryPoint>]
let main argv =
    let summaryFile = Environment.GetEnvironmentVariable "BLR_TEST_SUMMARY"
    let printer = defaultConfig.printer

    let recording =
        { printer with
            summary =
                fun config summary ->
                    async {
                        do! printer.summary config summary

                        if not (String.IsNullOrEmpty summaryFile) then
                            let failed = summary.failed.Length + summary.errored.Length
                            File.WriteAllText(summaryFile, sprintf "%d %d" summary.passed.Length failed)
                    }
        }

    runTestsInAssemblyWithCLIArgs [ CLIArguments.Printer recording ] argv
