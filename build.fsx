// BlockwiseLR build script: `dotnet fsi build.fsx <target>`
//   setup  make the machine able to run TorchSharp 0.107 (libstdc++ of GCC >= 13) and mpirun (openmpi-bin), restore packages
//   build  setup, then build Hybrid.sln (Release)
//   test   build, then the format check (CSharpier, Fantomas, 120 columns), every test runner and the pack check;
//          the last line is `N passed, M failed`
//   demo   build, then the main job: blr demo (gpt2-tiny on the built-in corpus, AdamW vs Blockwise AdamW with the
//          paper ratios vs Blockwise AdamW with auto ratios);
//          extra arguments go to blr demo, e.g. `dotnet fsi build.fsx demo --quick`
//   bench  build, then the BenchmarkDotNet benchmarks (minutes; not part of test)
//   bundle the GPU bundle of docs (app built for an external libtorch + the .NET runtime + run.sh), checked end
//          to end on this machine with --device cpu against the CPU natives package
// Plain F# (no NuGet references), so it starts on a fresh machine with only the .NET SDK.

// How the --nproc launcher reads an mpirun (Open MPI 4 or 5, MPICH): the set-up checks the one it finds alike.
#load "src/Core.FSharp/MpiLaunch.fs"

open System
open System.Diagnostics
open System.IO
open System.Xml.Linq

let root = __SOURCE_DIRECTORY__
let configuration = "Release"
let requiredGlibcxx = "GLIBCXX_3.4.32"

exception BuildFailure of string

let fail message = raise (BuildFailure message)

let log (message: string) =
    Console.Out.Flush()
    printfn "[build] %s" message

/// Runs a program with inherited stdio; returns its exit code.
let run (program: string) (args: string list) (env: (string * string) list) =
    let psi =
        ProcessStartInfo(program, args, WorkingDirectory = root, UseShellExecute = false)

    for key, value in env do
        psi.Environment[key] <- value

    use proc = Process.Start psi
    proc.WaitForExit()
    proc.ExitCode

/// Runs a program and returns its standard output, or None when it cannot be started or fails.
let capture (program: string) (args: string list) =
    try
        let psi =
            ProcessStartInfo(program, args, RedirectStandardOutput = true, RedirectStandardError = true)

        use proc = Process.Start psi
        let output = proc.StandardOutput.ReadToEnd()
        proc.WaitForExit()
        if proc.ExitCode = 0 then Some output else None
    with _ ->
        None

let runOrFail program args =
    let code = run program args []

    if code <> 0 then
        fail (sprintf "`%s %s` exited with %d" program (String.concat " " args) code)

// ---- setup: libstdc++ -------------------------------------------------------------------------------

/// The libstdc++.so.6 the dynamic loader resolves, from its cache.
let loaderLibStdCxx () =
    [ "ldconfig"; "/sbin/ldconfig"; "/usr/sbin/ldconfig" ]
    |> List.tryPick (fun ldconfig -> capture ldconfig [ "-p" ])
    |> Option.bind (fun cache ->
        cache.Split('\n')
        |> Array.tryFind (fun line -> line.TrimStart().StartsWith "libstdc++.so.6 " && line.Contains "x86-64")
        |> Option.map (fun line -> line.Substring(line.IndexOf "=>" + 2).Trim()))
    |> Option.orElse (
        [
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"
            "/usr/lib64/libstdc++.so.6"
            "/lib/x86_64-linux-gnu/libstdc++.so.6"
        ]
        |> List.tryFind File.Exists
    )

let hasGlibcxx (path: string) =
    let needle = Text.Encoding.ASCII.GetBytes requiredGlibcxx
    File.ReadAllBytes(path).AsSpan().IndexOf(ReadOnlySpan needle) >= 0

let osRelease () =
    if File.Exists "/etc/os-release" then
        File.ReadAllLines "/etc/os-release"
        |> Array.choose (fun line ->
            match line.Split('=', 2) with
            | [| key; value |] -> Some(key, value.Trim('"'))
            | _ -> None)
        |> Map.ofArray
    else
        Map.empty

let isRoot () =
    capture "id" [ "-u" ]
    |> Option.map (fun s -> s.Trim() = "0")
    |> Option.defaultValue false

/// The Debian archive this machine already uses (so mirrors and proxies keep working).
let debianArchiveUri () =
    let deb822 = "/etc/apt/sources.list.d/debian.sources"

    let fromDeb822 =
        if File.Exists deb822 then
            File.ReadAllLines deb822
            |> Array.map (fun l -> l.Trim())
            |> Array.filter (fun l -> l.StartsWith "URIs:")
            |> Array.map (fun l -> l.Substring(5).Trim().Split(' ')[0])
            |> Array.tryFind (fun uri -> uri.TrimEnd('/').EndsWith "/debian")
        else
            None

    let fromList () =
        [ "/etc/apt/sources.list" ]
        |> List.filter File.Exists
        |> List.collect (File.ReadAllLines >> List.ofArray)
        |> List.map (fun l -> l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        |> List.tryPick (fun parts ->
            if parts.Length >= 3 && parts[0] = "deb" && parts[2] = "bookworm" then
                Some parts[1]
            else
                None)

    fromDeb822 |> Option.orElse (fromList ())

let requirementMessage (path: string) =
    sprintf
        "%s lacks %s, which TorchSharp 0.107 needs (libstdc++ of GCC >= 13; Ubuntu 24.04+, Debian 13+ and Fedora 39+ \
         have it). On Debian 12, run `dotnet fsi build.fsx setup` as root: it installs libstdc++6 from Debian 13, pinned low. Elsewhere, install GCC 13's libstdc++6 or newer."
        path
        requiredGlibcxx

/// Makes libstdc++ provide GLIBCXX_3.4.32: nothing to do when it already does; on Debian 12 as root,
/// libstdc++6 from Debian 13 (trixie) pinned at priority 100 so nothing else follows by default
/// (the fix checked in shared/docs/environment.md); anywhere else, one message with the requirement.
let ensureLibStdCxx () =
    match loaderLibStdCxx () with
    | None when not (OperatingSystem.IsLinux()) -> log "not Linux: no libstdc++ check"
    | None -> fail "setup: no libstdc++.so.6 found (ldconfig -p lists none); install libstdc++6 from GCC 13 or newer"
    | Some path when hasGlibcxx path -> log (sprintf "libstdc++ ok: %s provides %s" path requiredGlibcxx)
    | Some path ->
        let os = osRelease ()

        let debian12 =
            os.TryFind "ID" = Some "debian" && os.TryFind "VERSION_ID" = Some "12"

        if not (debian12 && isRoot ()) then
            fail ("setup: " + requirementMessage path)

        match debianArchiveUri () with
        | None ->
            fail (
                "setup: cannot find this machine's Debian archive in /etc/apt to add Debian 13 from. "
                + requirementMessage path
            )
        | Some uri ->
            log (sprintf "%s lacks %s: installing libstdc++6 from Debian 13 (trixie), pinned low" path requiredGlibcxx)
            File.WriteAllText("/etc/apt/sources.list.d/blockwiselr-trixie.list", sprintf "deb %s trixie main\n" uri)

            File.WriteAllText(
                "/etc/apt/preferences.d/blockwiselr-trixie-low",
                "Package: *\nPin: release n=trixie\nPin-Priority: 100\n"
            )

            let apt = [ ("DEBIAN_FRONTEND", "noninteractive") ]

            if run "apt-get" [ "update"; "-qq" ] apt <> 0 then
                fail "setup: apt-get update failed"

            if run "apt-get" [ "install"; "-y"; "-qq"; "-t"; "trixie"; "libstdc++6" ] apt <> 0 then
                fail "setup: apt-get install -t trixie libstdc++6 failed"

            match loaderLibStdCxx () with
            | Some now when hasGlibcxx now -> log (sprintf "libstdc++ ok: %s provides %s" now requiredGlibcxx)
            | _ -> fail ("setup: libstdc++6 from Debian 13 was installed, but " + requirementMessage path)

// ---- setup: MPI ------------------------------------------------------------------------------------

/// Data-parallel training on the CPU (and its tests) starts ranks with mpirun: Open MPI 4 or 5 (Debian's
/// openmpi-bin, installed when there is none) or MPICH, checked with the launcher's own reading of `mpirun --version`.
let ensureMpi () =
    let onPath name =
        (Environment.GetEnvironmentVariable "PATH").Split(':', StringSplitOptions.RemoveEmptyEntries)
        |> Array.exists (fun dir -> File.Exists(Path.Combine(dir, name)))

    if onPath "mpirun" then
        let psi =
            ProcessStartInfo("mpirun", [ "--version" ], UseShellExecute = false, RedirectStandardOutput = true)

        use proc = Process.Start psi
        let text = proc.StandardOutput.ReadToEnd()
        proc.WaitForExit()

        match BlockwiseLR.Core.MpiLaunch.identify text with
        | Ok found -> log (sprintf "mpi ok: mpirun is %O, which `blr train --nproc` knows how to start" found)
        | Error problem -> fail ("setup: the mpirun on PATH cannot start `blr train --nproc`: " + problem)
    elif not (OperatingSystem.IsLinux()) then
        log "not Linux: no MPI set-up (data-parallel CPU training needs mpirun)"
    elif not (isRoot ()) || not (onPath "apt-get") then
        fail
            "setup: mpirun is missing; install OpenMPI (Debian/Ubuntu: apt-get install openmpi-bin as root, or run \
             `dotnet fsi build.fsx setup` as root)"
    else
        log "installing openmpi-bin (mpirun for data-parallel CPU training)"
        let apt = [ ("DEBIAN_FRONTEND", "noninteractive") ]

        if
            run "apt-get" [ "install"; "-y"; "-qq"; "--no-install-recommends"; "openmpi-bin" ] apt
            <> 0
        then
            if
                run "apt-get" [ "update"; "-qq" ] apt <> 0
                || run "apt-get" [ "install"; "-y"; "-qq"; "--no-install-recommends"; "openmpi-bin" ] apt
                   <> 0
            then
                fail "setup: apt-get install openmpi-bin failed"

// ---- targets ------------------------------------------------------------------------------------------

let dotnetEnv = [ "DOTNET_CLI_TELEMETRY_OPTOUT", "1"; "DOTNET_NOLOGO", "1" ]

let setup () =
    ensureLibStdCxx ()
    ensureMpi ()
    log "restoring packages"

    if run "dotnet" [ "restore"; "Hybrid.sln"; "-v"; "q" ] dotnetEnv <> 0 then
        fail "dotnet restore failed"

let build () =
    setup ()
    log (sprintf "building Hybrid.sln (%s)" configuration)

    if
        run
            "dotnet"
            [
                "build"
                "Hybrid.sln"
                "-c"
                configuration
                "--no-restore"
                "-v"
                "q"
                "-nologo"
            ]
            dotnetEnv
        <> 0
    then
        fail "dotnet build failed"

let blr (args: string list) =
    let dll =
        Path.Combine(root, "src", "Cli.FSharp", "bin", configuration, "net10.0", "blr.dll")

    let code = run "dotnet" (dll :: args) dotnetEnv

    if code <> 0 then
        fail (sprintf "blr %s exited with %d" (String.concat " " args) code)

let demo (args: string list) =
    build ()
    blr ("demo" :: args)

type Counts =
    {
        Passed: int
        Failed: int
    }

    /// The counts of two runners together.
    static member add (a: Counts) (b: Counts) =
        {
            Passed = a.Passed + b.Passed
            Failed = a.Failed + b.Failed
        }

/// Expecto projects (run with `dotnet run`, since Expecto has no `dotnet test` adapter here); each writes
/// its counts to BLR_TEST_SUMMARY as "passed failed" (errored tests counted as failed).
let runExpecto (project: string) =
    let summary =
        Path.Combine(Path.GetTempPath(), sprintf "blr-%s-%d.txt" (Path.GetFileName project) Environment.ProcessId)

    File.Delete summary
    log (sprintf "running %s (Expecto)" project)

    let code =
        run
            "dotnet"
            [
                "run"
                "--project"
                project
                "-c"
                configuration
                "--no-build"
                "--"
                "--summary"
            ]
            (("BLR_TEST_SUMMARY", summary) :: dotnetEnv)

    let counts =
        if File.Exists summary then
            match File.ReadAllText(summary).Split(' ') |> Array.map int with
            | [| passed; failed |] -> { Passed = passed; Failed = failed }
            | _ -> { Passed = 0; Failed = 1 }
        else
            log (sprintf "%s wrote no summary (exit %d): counted as 1 failed" project code)
            { Passed = 0; Failed = 1 }

    if code <> 0 && counts.Failed = 0 then
        { counts with Failed = 1 }
    else
        counts

/// xunit projects under `dotnet test`, counted from the TRX report (failed, errored, timed-out and
/// aborted tests all count as failed).
let runXunit (project: string) =
    let results =
        Path.Combine(Path.GetTempPath(), sprintf "blr-trx-%d" Environment.ProcessId)

    if Directory.Exists results then
        Directory.Delete(results, true)

    log (sprintf "running %s (xunit)" project)

    let code =
        run
            "dotnet"
            [
                "test"
                project
                "-c"
                configuration
                "--no-build"
                "--nologo"
                "--logger"
                "trx;LogFileName=tests.trx"
                "--logger"
                "console;verbosity=normal"
                "--results-directory"
                results
            ]
            dotnetEnv

    let trx = Path.Combine(results, "tests.trx")

    let counts =
        if File.Exists trx then
            let counters =
                XDocument.Load(trx).Descendants()
                |> Seq.find (fun e -> e.Name.LocalName = "Counters")

            let attr name =
                counters.Attribute(XName.Get name)
                |> Option.ofObj
                |> Option.map (fun a -> int a.Value)
                |> Option.defaultValue 0

            {
                Passed = attr "passed"
                Failed = attr "failed" + attr "error" + attr "timeout" + attr "aborted"
            }
        else
            log (sprintf "%s wrote no TRX report (exit %d): counted as 1 failed" project code)
            { Passed = 0; Failed = 1 }

    if code <> 0 && counts.Failed = 0 then
        { counts with Failed = 1 }
    else
        counts

/// Packs the library and the tool, installs the tool from the local package folder into a temporary tool path
/// and runs `blr --help` and a 2-step `blr train` with it. Counted as one test.
/// The packages' version, as Directory.Build.props sets it.
let private packageVersion () =
    let props = File.ReadAllText(Path.Combine(root, "Directory.Build.props"))
    Text.RegularExpressions.Regex.Match(props, "<Version>([^<]+)</Version>").Groups[1].Value

let packCheck () =
    log "pack check: dotnet pack, tool install from out/packages, blr --help, a 2-step blr train, package metadata"

    let packages = Path.Combine(root, "out", "packages")

    if Directory.Exists packages then
        Directory.Delete(packages, true)

    let tools =
        Path.Combine(Path.GetTempPath(), sprintf "blr-tool-check-%d" Environment.ProcessId)

    let blr = Path.Combine(tools, "blr")

    let steps =
        [
            "pack",
            (fun () ->
                run
                    "dotnet"
                    [
                        "pack"
                        "Hybrid.sln"
                        "-c"
                        configuration
                        "--no-build"
                        "-o"
                        packages
                        "-v"
                        "q"
                        "-nologo"
                    ]
                    dotnetEnv)
            "install",
            (fun () ->
                run
                    "dotnet"
                    [
                        "tool"
                        "install"
                        "BlockwiseLR.Tool"
                        "--version"
                        packageVersion ()
                        "--tool-path"
                        tools
                        "--add-source"
                        packages
                    ]
                    dotnetEnv)
            "blr --help", (fun () -> run blr [ "--help" ] [])
            "blr prepare",
            (fun () -> run blr [ "prepare"; "--builtin"; "gutenberg"; "--out"; Path.Combine(tools, "data") ] [])
            "blr train",
            (fun () ->
                run
                    blr
                    [
                        "train"
                        "--data"
                        Path.Combine(tools, "data")
                        "--set"
                        "layers=1"
                        "--set"
                        "width=32"
                        "--set"
                        "heads=2"
                        "--steps"
                        "2"
                        "--batch-size"
                        "2"
                        "--seq-len"
                        "16"
                        "--eval-windows"
                        "2"
                        "--out"
                        Path.Combine(tools, "run")
                    ]
                    [])
        ]

    let props = File.ReadAllText(Path.Combine(root, "Directory.Build.props"))

    let property name =
        Text.RegularExpressions.Regex.Match(props, $"<{name}>([^<]+)</{name}>").Groups[1].Value

    let nuspecOf (id: string) =
        use zip =
            IO.Compression.ZipFile.OpenRead(Path.Combine(packages, $"{id}.{packageVersion ()}.nupkg"))

        let entry = zip.Entries |> Seq.find (fun e -> e.FullName.EndsWith ".nuspec")
        use reader = new StreamReader(entry.Open())
        XDocument.Parse(reader.ReadToEnd())

    let entryText (package: string) (name: string) =
        use zip = IO.Compression.ZipFile.OpenRead package

        match zip.Entries |> Seq.tryFind (fun e -> e.FullName = name) with
        | Some entry ->
            use reader = new StreamReader(entry.Open())
            Some(reader.ReadToEnd())
        | None -> None

    let element (nuspec: XDocument) name =
        nuspec.Descendants() |> Seq.tryFind (fun e -> e.Name.LocalName = name)

    // The library package depends on TorchSharp, the core, the tokenizer and data readers: nothing that draws, and
    // no native package (libtorch's and the Hugging Face tokenizers' are the app's choice of platform).
    let libraryDependencies () =
        let dependencies =
            (nuspecOf "BlockwiseLR").Descendants()
            |> Seq.filter (fun e -> e.Name.LocalName = "dependency")
            |> Seq.map (fun e -> e.Attribute(XName.Get "id").Value)
            |> Seq.distinct
            |> List.ofSeq

        log (sprintf "BlockwiseLR package dependencies: %s" (String.Join(", ", dependencies)))

        let refused =
            dependencies
            |> List.filter (fun d ->
                [ "ScottPlot"; "Tokenizers.DotNet.runtime."; "libtorch-" ]
                |> List.exists (fun prefix -> d.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)))

        if refused.IsEmpty then
            0
        else
            log (sprintf "BlockwiseLR must not depend on %s" (String.Join(", ", refused)))
            1

    // Every package: licence, project and repository URL with the commit, the short readme, and a symbols package
    // whose PDB maps the sources to that commit (SourceLink).
    let metadata (id: string) () =
        let nuspec = nuspecOf id

        let text name =
            element nuspec name |> Option.map (fun e -> e.Value)

        let attribute name (e: XElement option) =
            e |> Option.map (fun e -> e.Attribute(XName.Get name).Value)

        let repositoryUrl = property "BlrRepositoryUrl"
        let repository = element nuspec "repository"
        let commit = attribute "commit" repository |> Option.defaultValue ""
        let nupkg = Path.Combine(packages, $"{id}.{packageVersion ()}.nupkg")
        let snupkg = Path.ChangeExtension(nupkg, ".snupkg")

        let raw =
            repositoryUrl.Replace("https://github.com/", "https://raw.githubusercontent.com/")
            + "/"
            + commit
            + "/"

        let sourceLinked () =
            use zip = IO.Compression.ZipFile.OpenRead snupkg

            zip.Entries
            |> Seq.filter (fun e -> e.FullName.EndsWith ".pdb")
            |> Seq.exists (fun e ->
                use reader = new StreamReader(e.Open(), Text.Encoding.Latin1)

                reader.ReadToEnd().Contains raw)

        let checks =
            [
                "licence", text "license" = Some(property "PackageLicenseExpression")
                "projectUrl", text "projectUrl" = Some repositoryUrl
                "repository url", attribute "url" repository = Some repositoryUrl
                "repository commit", Text.RegularExpressions.Regex.IsMatch(commit, "^[0-9a-f]{40}$")
                "readme",
                (text "readme" = Some "package-readme.md"
                 && entryText nupkg "package-readme.md" =
                     Some(File.ReadAllText(Path.Combine(root, "docs", "package-readme.md"))))
                "symbols package", File.Exists snupkg
                "SourceLink", File.Exists snupkg && sourceLinked ()
            ]

        match checks |> List.filter (snd >> not) |> List.map fst with
        | [] ->
            log (sprintf "%s: licence, URLs, commit, readme, snupkg and SourceLink as expected" id)
            0
        | missing ->
            log (sprintf "%s package metadata wrong: %s" id (String.Join(", ", missing)))
            1

    let failed =
        (steps
         @ [
             "BlockwiseLR.nuspec has no plotting or native dependency", libraryDependencies
             "BlockwiseLR package metadata", metadata "BlockwiseLR"
             "BlockwiseLR.Core package metadata", metadata "BlockwiseLR.Core"
             "BlockwiseLR.Tool package metadata", metadata "BlockwiseLR.Tool"
         ])
        |> List.tryFind (fun (_, step) -> step () <> 0)

    if Directory.Exists tools then
        Directory.Delete(tools, true)

    match failed with
    | Some(name, _) ->
        log (sprintf "pack check FAILED at %s" name)
        { Passed = 0; Failed = 1 }
    | None ->
        log "pack check passed"
        { Passed = 1; Failed = 0 }

/// The samples/ programs, built with the solution, each run for a few steps: a sample that does not run is a
/// failed test. Each counts as one test.
let runSamples () =
    let sample (name: string) (args: string list) (expect: string) =
        let dll =
            Path.Combine(root, "samples", name, "bin", configuration, "net10.0", name + ".dll")

        log (sprintf "sample %s %s" name (String.Join(" ", args)))

        let psi =
            ProcessStartInfo(
                "dotnet",
                dll :: args,
                WorkingDirectory = root,
                UseShellExecute = false,
                RedirectStandardOutput = true
            )

        use proc = Process.Start psi
        let output = proc.StandardOutput.ReadToEnd()
        proc.WaitForExit()
        printf "%s" output

        if proc.ExitCode = 0 && output.Contains expect then
            { Passed = 1; Failed = 0 }
        else
            log (sprintf "sample %s FAILED (exit %d, expected output containing '%s')" name proc.ExitCode expect)
            { Passed = 0; Failed = 1 }

    let output =
        Path.Combine(Path.GetTempPath(), sprintf "blr-sample-%d" Environment.ProcessId)

    let results =
        [
            sample "Pretrain" [ "4"; output ] "final val loss"
            sample "CustomLoop" [ "30" ] "step  30: loss"
            sample "FSharpQuickStart" [ "4"; Path.Combine(output, "fsharp") ] "own model: final val loss"
        ]

    if Directory.Exists output then
        Directory.Delete(output, true)

    results |> List.reduce Counts.add

/// tools/gpu-check.sh, the GPU device check, end to end with --device cpu in its quick mode (counted as one
/// test): every section runs, so the script cannot rot before a GPU machine runs it.
let gpuCheck () =
    let report =
        Path.Combine(Path.GetTempPath(), sprintf "blr-gpu-check-%d.md" Environment.ProcessId)

    let dll =
        Path.Combine(root, "src", "Cli.FSharp", "bin", configuration, "net10.0", "blr.dll")

    log "gpu check (quick, --device cpu): tools/gpu-check.sh"

    let code =
        run
            "bash"
            [
                Path.Combine(root, "tools", "gpu-check.sh")
                "--device"
                "cpu"
                "--quick"
                "--out"
                report
                "--fixtures"
                Path.Combine(root, "tests", "data")
            ]
            (("BLR_COMMAND", sprintf "dotnet %s" dll) :: dotnetEnv)

    let text = if File.Exists report then File.ReadAllText report else ""

    let sections =
        [
            "## 1. doctor"
            "## 2. Fixture"
            "## 3."
            "## 4. ms/step"
            "## 5. Peak"
            "## 6. Collectives"
        ]

    let missing = sections |> List.filter (fun s -> not (text.Contains s))

    if File.Exists report then
        File.Delete report

    if code = 0 && missing.IsEmpty then
        { Passed = 1; Failed = 0 }
    else
        log (sprintf "gpu check FAILED (exit %d; sections missing: %s)" code (String.Join(", ", missing)))
        { Passed = 0; Failed = 1 }

/// The layout checks (.editorconfig): CSharpier and Fantomas, the tool manifest's versions, in check mode over the
/// whole tree, and no line of src/ over 120 characters. Each counts as one test.
let formatCheck () =
    log "format check: dotnet tool restore, csharpier check, fantomas --check, lines of src/ <= 120 characters"

    let one (name: string) (passed: bool) =
        if passed then
            { Passed = 1; Failed = 0 }
        else
            log (
                sprintf
                    "%s FAILED (run `dotnet tool restore`, then `dotnet csharpier format .` and `dotnet fantomas .`)"
                    name
            )

            { Passed = 0; Failed = 1 }

    let restored = run "dotnet" [ "tool"; "restore" ] dotnetEnv = 0

    let longLines =
        [ "*.cs"; "*.fs" ]
        |> List.collect (fun pattern ->
            Directory.GetFiles(Path.Combine(root, "src"), pattern, SearchOption.AllDirectories)
            |> List.ofArray)
        |> List.filter (fun file ->
            let sep = string Path.DirectorySeparatorChar
            not (file.Contains(sep + "bin" + sep) || file.Contains(sep + "obj" + sep)))
        |> List.collect (fun file ->
            File.ReadAllLines file
            |> Array.mapi (fun i line -> i + 1, line)
            |> Array.filter (fun (_, line) -> line.Length > 120)
            |> Array.map (fun (n, line) ->
                sprintf "%s:%d (%d characters)" (Path.GetRelativePath(root, file)) n line.Length)
            |> List.ofArray)

    for line in longLines |> List.truncate 10 do
        log (sprintf "over 120 characters: %s" line)

    [
        one "csharpier check" (restored && run "dotnet" [ "csharpier"; "check"; "." ] dotnetEnv = 0)
        one
            "fantomas --check"
            (restored
             && run "dotnet" [ "fantomas"; "--check"; "src"; "tests"; "build.fsx" ] dotnetEnv = 0)
        one "line length" longLines.IsEmpty
    ]
    |> List.reduce Counts.add

let test () =
    build ()

    let all =
        [
            formatCheck ()
            runExpecto "tests/Core.Tests"
            runXunit "tests/Api.Tests"
            runSamples ()
            gpuCheck ()
            packCheck ()
        ]
        |> List.reduce Counts.add

    Console.Out.Flush()
    printfn "%d passed, %d failed" all.Passed all.Failed
    if all.Failed > 0 then 1 else 0

/// BenchmarkDotNet over every benchmark; extra arguments go to BenchmarkDotNet (e.g. --filter '*Optimizer*').
let bench (args: string list) =
    build ()

    let dll =
        Path.Combine(root, "benchmarks", "bin", configuration, "net10.0", "Benchmarks.dll")

    let filter = if args.IsEmpty then [ "--filter"; "*" ] else args
    run "dotnet" (dll :: filter) dotnetEnv

/// out/blr-bundle.tar.gz: `blr` built for an external libtorch (no natives), the .NET runtime, run.sh and
/// gpu-check.sh and torch_eager_bench.py; then unpacked into a temporary folder and run: prepare + a 2-step train on the CPU, with the CPU
/// natives package as the "external" libtorch.
let bundle () =
    setup ()
    let out = Path.Combine(root, "out", "bundle")

    if Directory.Exists out then
        Directory.Delete(out, true)

    let app = Path.Combine(out, "app")
    log "publishing blr for an external libtorch"

    runOrFail
        "dotnet"
        [
            "publish"
            "src/Cli.FSharp"
            "-c"
            configuration
            "-o"
            app
            "-p:TorchBackend=external"
            "-v"
            "q"
            "-nologo"
        ]

    for runtime in Directory.GetDirectories(Path.Combine(app, "runtimes")) do
        if Path.GetFileName runtime <> "linux-x64" then
            Directory.Delete(runtime, true)

    let dotnetRoot =
        match capture "dotnet" [ "--list-runtimes" ] with
        | Some text ->
            let line =
                text.Split('\n') |> Array.find (fun l -> l.StartsWith "Microsoft.NETCore.App ")

            Path.GetDirectoryName(Path.GetDirectoryName(line.Substring(line.IndexOf('[') + 1).TrimEnd(']', '\r')))
        | None -> fail "dotnet --list-runtimes failed"

    log (sprintf "packing the .NET runtime from %s" dotnetRoot)

    runOrFail
        "tar"
        [
            "-cJf"
            Path.Combine(out, "dotnet-rt.tar.xz")
            "-C"
            dotnetRoot
            "dotnet"
            "host"
            "shared/Microsoft.NETCore.App"
        ]

    for script in [ "run.sh"; "gpu-check.sh"; "torch_eager_bench.py" ] do
        File.Copy(Path.Combine(root, "tools", script), Path.Combine(out, script))

    let archive = Path.Combine(root, "out", "blr-bundle.tar.gz")
    runOrFail "tar" [ "-czf"; archive; "-C"; out; "." ]
    log (sprintf "%s: %.1f MB" archive (float (FileInfo(archive).Length) / 1e6))
    // End to end, as on a GPU machine but with --device cpu and the CPU natives as the external libtorch.
    let check =
        Path.Combine(Path.GetTempPath(), sprintf "blr-bundle-check-%d" Environment.ProcessId)

    Directory.CreateDirectory check |> ignore
    runOrFail "tar" [ "-xzf"; archive; "-C"; check ]

    let natives =
        Path.Combine(
            Environment.GetFolderPath Environment.SpecialFolder.UserProfile,
            ".nuget",
            "packages",
            "libtorch-cpu-linux-x64",
            "2.10.0",
            "runtimes",
            "linux-x64",
            "native"
        )

    let env =
        [ "BLR_LIBTORCH", natives; "BLR_DOTNET_DIR", Path.Combine(check, "dotnet") ]

    let runBundle args =
        if run (Path.Combine(check, "run.sh")) args env <> 0 then
            fail (sprintf "bundle check: run.sh %s failed" (String.concat " " args))

    runBundle [ "prepare"; "--builtin"; "gutenberg"; "--out"; Path.Combine(check, "data") ]

    runBundle
        [
            "train"
            "--data"
            Path.Combine(check, "data")
            "--set"
            "layers=1"
            "--set"
            "width=32"
            "--set"
            "heads=2"
            "--steps"
            "2"
            "--batch-size"
            "2"
            "--seq-len"
            "16"
            "--eval-windows"
            "2"
            "--device"
            "cpu"
            "--out"
            Path.Combine(check, "run")
        ]

    Directory.Delete(check, true)
    log "bundle check passed: prepare and a 2-step train ran from the unpacked bundle on the CPU"

let targets =
    [
        "setup",
        (fun () ->
            setup ()
            0)
        "build",
        (fun () ->
            build ()
            0)
        "test", test
        "bundle",
        (fun () ->
            bundle ()
            0)
        "demo",
        (fun () ->
            demo []
            0)
    ]

let main (args: string list) =
    match args with
    | "demo" :: rest when not rest.IsEmpty ->
        try
            demo rest
            0
        with BuildFailure message ->
            eprintfn "build.fsx demo: %s" message
            1
    | "bench" :: rest ->
        try
            bench rest
        with BuildFailure message ->
            eprintfn "build.fsx bench: %s" message
            1
    | [ name ] when targets |> List.exists (fst >> (=) name) ->
        try
            (targets |> List.find (fst >> (=) name) |> snd) ()
        with BuildFailure message ->
            eprintfn "build.fsx %s: %s" name message
            1
    | _ ->
        eprintfn
            "usage: dotnet fsi build.fsx <%s|bench [BenchmarkDotNet arguments]>"
            (targets |> List.map fst |> String.concat "|")

        2

exit (main (fsi.CommandLineArgs |> Array.toList |> List.tail))
