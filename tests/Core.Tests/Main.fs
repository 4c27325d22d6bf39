module internal BlockwiseLR.Core.Tests.Main

open System
open System.IO
open System.Reflection
open Expecto

/// Every [<Tests>] value of this assembly. The test modules are internal (they use the core's internal rules through
/// InternalsVisibleTo), and Expecto's own discovery reads exported types only, so this reads them all.
let discovered () =
    let flags = BindingFlags.Static ||| BindingFlags.Public ||| BindingFlags.NonPublic

    Assembly.GetExecutingAssembly().GetTypes()
    |> Array.sortBy (fun t -> t.FullName)
    |> Array.collect (fun t -> t.GetProperties flags)
    |> Array.filter (fun p -> p.IsDefined(typeof<TestsAttribute>) && p.PropertyType = typeof<Test>)
    |> Array.map (fun p -> p.GetValue null :?> Test)
    |> List.ofArray

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

    match discovered () with
    | [] ->
        eprintfn "Core.Tests: no [<Tests>] value found: the discovery is broken"
        1
    | tests -> runTestsWithCLIArgs [ CLIArguments.Printer recording ] argv (TestList(tests, Normal))
