/// `blr train --nproc N`: starts the N processes of a data-parallel run for a user who has not used MPI. On the
/// CPU it runs this same command under mpirun (Open MPI 4 or 5, or MPICH's hydra: MpiLaunch); on CUDA it starts
/// one process per GPU itself, as torchrun does (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
/// MASTER_PORT), and NCCL meets over a TCP socket at that address: no MPI needed.
module BlockwiseLR.Cli.Launch

open System
open System.Diagnostics
open System.IO
open System.Runtime.InteropServices
open BlockwiseLR.Core

/// This program and the arguments that start it again (`dotnet blr.dll` or the apphost).
let private self () =
    let path = Environment.ProcessPath
    let args = Environment.GetCommandLineArgs() |> Array.skip 1 |> List.ofArray

    if Path.GetFileNameWithoutExtension path = "dotnet" then
        path, Reflection.Assembly.GetEntryAssembly().Location :: args
    else
        path, args

/// The arguments without --nproc and its value.
let withoutNproc (args: string list) =
    let rec drop =
        function
        | "--nproc" :: _ :: rest -> drop rest
        | (a: string) :: rest when a.StartsWith "--nproc=" -> drop rest
        | a :: rest -> a :: drop rest
        | [] -> []

    drop args

let private onPath (name: string) =
    (Environment.GetEnvironmentVariable "PATH"
     |> Option.ofObj
     |> Option.defaultValue "")
        .Split(':', StringSplitOptions.RemoveEmptyEntries)
    |> Array.map (fun dir -> Path.Combine(dir, name))
    |> Array.tryFind File.Exists

[<DllImport("libc", SetLastError = true)>]
extern int kill(int pid, int signal)

[<DllImport("libc")>]
extern uint geteuid()

[<DllImport("libc", EntryPoint = "_exit")>]
extern void private _exit(int code)

/// Ends this process at once, running no exit handlers (nothing that could wait for another process).
let exitNow (code: int) =
    Console.Error.Flush()
    _exit code

let private sigterm = 15
let private sigkill = 9

/// How a launched run ended.
type Ended =
    /// Every process ended by itself: the exit code of the first to fail, else 0.
    | Exited of int
    /// After a stop signal: the ranks stopped at one step as agreed and rank 0 wrote a checkpoint.
    | Stopped
    /// A second stop signal: the ranks and mpirun were killed, without a checkpoint.
    | Killed

/// The file a rank leaves in its launcher's status folder (BLR_LAUNCH_STATUS) once it can take a stop signal: its
/// handler is registered and its training has begun (Commands.withTraining writes it after the first step and
/// removes it when training ends).
let readyFile (folder: string) (pid: int) =
    Path.Combine(folder, sprintf "ready-%d" pid)

/// The file where a rank that ended by itself leaves its exit code in the status folder (Program.main writes it);
/// a rank that leaves none died without a word.
let exitFile (folder: string) (rank: int) =
    Path.Combine(folder, sprintf "rank-%d" rank)

/// This process's launcher status folder (BLR_LAUNCH_STATUS) when `blr train --nproc` started it, else None.
let statusFolder () =
    match Environment.GetEnvironmentVariable "BLR_LAUNCH_STATUS" with
    | null
    | "" -> None
    | folder -> Some folder

/// Every process below <paramref name="root"/> (from /proc).
let private descendants (root: int) =
    let parents =
        Directory.GetDirectories "/proc"
        |> Array.choose (fun dir ->
            match Int32.TryParse(Path.GetFileName dir) with
            | true, pid ->
                try
                    let stat = File.ReadAllText(Path.Combine(dir, "stat"))
                    // pid (comm) state ppid ...: comm may hold spaces, so read after its closing parenthesis.
                    let after = stat.Substring(stat.LastIndexOf ')' + 2).Split ' '
                    Some(pid, int after[1])
                with _ ->
                    None
            | _ -> None)

    let rec below pid =
        [
            for child, parent in parents do
                if parent = pid then
                    yield child
                    yield! below child
        ]

    below root

/// The NAME=VALUE entries a process was started with (none for one that is gone or not this user's).
let private environment (pid: int) =
    try
        File.ReadAllText(sprintf "/proc/%d/environ" pid).Split('\000')
    with _ ->
        [||]

/// The processes of this run below <paramref name="root"/>: those started with BLR_LAUNCHED=1 in their environment
/// (mpirun's own processes and daemons are not, so a signal reaches the ranks and not the launcher that would
/// tear them down).
let private ranksBelow (root: int) =
    descendants root
    |> List.filter (fun pid -> environment pid |> Array.contains "BLR_LAUNCHED=1")

/// The MPI rank of a process, from the variable its launcher set (Open MPI's or hydra's).
let private rankOf (pid: int) =
    environment pid
    |> Array.tryPick (fun entry ->
        [ "OMPI_COMM_WORLD_RANK="; "PMI_RANK=" ]
        |> List.tryFind entry.StartsWith
        |> Option.bind (fun prefix ->
            match Int32.TryParse(entry.Substring prefix.Length) with
            | true, rank -> Some rank
            | _ -> None))

/// Passes a child's stream on line by line, keeping back what mpirun says of its own (banners, "noticed that ...")
/// and noting whether a rank spoke for itself ("blr ..." lines).
type private Relay(reader: StreamReader, writer: TextWriter) =
    let held = Text.StringBuilder()
    let mutable inBanner = false
    let mutable spoke = false

    let pump () =
        let mutable line = reader.ReadLine()

        while not (isNull line) do
            if MpiLaunch.isBannerRule line then
                inBanner <- not inBanner
                held.AppendLine line |> ignore
            elif inBanner || MpiLaunch.isMpirunReport line then
                held.AppendLine line |> ignore
            else
                if line.StartsWith "blr" then
                    spoke <- true

                writer.WriteLine line
                writer.Flush()

            line <- reader.ReadLine()

    let thread = Threading.Thread(pump, IsBackground = true)
    do thread.Start()

    member _.Finish() = thread.Join()

    /// Waits for the stream's end for at most <paramref name="limit"/> (a killed run's orphans may hold it open).
    member _.Finish(limit: TimeSpan) = thread.Join limit |> ignore
    member _.Held = held.ToString()
    member _.Spoke = spoke

/// Waits for the children (each with this console), the first failure ending the others. SIGINT, SIGTERM, SIGHUP
/// (the terminal closed) or SIGQUIT to this launcher becomes SIGTERM to every rank of the run (the ranks themselves,
/// not mpirun, whose teardown would follow with SIGKILL): the ranks agree on the step to stop at, rank 0
/// checkpoints, and the run has Stopped. A rank gets it once it says it is ready (readyFile): a signal that comes
/// earlier waits for it, and a rank that is not one of this run's processes (a wrapper shell) gets none. A second
/// signal kills the ranks and mpirun at once: Killed.
let private supervise
    (viaMpirun: bool)
    (children: Process list)
    (status: string)
    (expectedRanks: int)
    (ranks: Collections.Generic.Dictionary<int, int>)
    (firstGone: int option ref)
    =

    let gate = obj ()
    let mutable signals = 0
    // The ranks already sent SIGTERM.
    let stopped = Collections.Generic.HashSet<int>()

    let processes () =
        [
            for p in children do
                yield! (if viaMpirun then ranksBelow p.Id else [ p.Id ])
        ]

    // SIGTERM to every rank that is ready and has not had one.
    let stopReady () =
        lock gate (fun () ->
            if signals = 1 then
                for pid in processes () do
                    if File.Exists(readyFile status pid) && stopped.Add pid then
                        kill (pid, sigterm) |> ignore)

    let onSignal (c: PosixSignalContext) =
        c.Cancel <- true

        let n =
            lock gate (fun () ->
                signals <- signals + 1
                signals)

        if n = 1 then
            stopReady ()
        elif n = 2 then
            // Everything below the children first (a process whose parent is killed first would be reparented
            // out of reach), then the children themselves.
            let below = children |> List.collect (fun p -> descendants p.Id)

            for pid in below @ (children |> List.map (fun p -> p.Id)) do
                kill (pid, sigkill) |> ignore

    use _int = PosixSignalRegistration.Create(PosixSignal.SIGINT, onSignal)
    use _term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, onSignal)
    use _hup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, onSignal)
    use _quit = PosixSignalRegistration.Create(PosixSignal.SIGQUIT, onSignal)
    // The first child to fail ends the others (they would wait for it in a collective).
    let mutable code = 0
    let mutable running = children

    while not running.IsEmpty do
        match running |> List.tryFind (fun p -> p.HasExited) with
        | Some finished ->
            running <- running |> List.filter (fun p -> p.Id <> finished.Id)

            if finished.ExitCode <> 0 && code = 0 then
                code <- finished.ExitCode

                for p in running do
                    try
                        p.Kill true
                    with _ ->
                        ()
        | None ->
            // A stop signal that came before a rank was ready reaches it now.
            stopReady ()

            // Which process is which rank, for a report that names only a process id (MPICH's).
            if viaMpirun && ranks.Count < expectedRanks then
                for p in children do
                    for pid in ranksBelow p.Id do
                        match rankOf pid with
                        | Some rank -> ranks[pid] <- rank
                        | None -> ()
            // The first rank to end, for a report that names none (Open MPI 4 tears the others down after it).
            elif viaMpirun && firstGone.Value.IsNone then
                firstGone.Value <-
                    ranks
                    |> Seq.tryFind (fun r -> not (Directory.Exists(sprintf "/proc/%d" r.Key)))
                    |> Option.map (fun r -> r.Value)

            Threading.Thread.Sleep 50

    // Interrupted ranks end cleanly (0); anything else after one signal is a failure of its own.
    match lock gate (fun () -> signals) with
    | 0 -> Exited code
    | 1 when code = 0 -> Stopped
    | 1 -> Exited code
    | _ -> Killed

/// The mpirun on PATH and what it is (Ok), or None when there is none, or what is wrong with it.
let internal findMpirun () : Result<string * MpiLaunch.Mpirun, string> option =
    onPath "mpirun"
    |> Option.map (fun mpirun ->
        try
            let info =
                ProcessStartInfo(
                    mpirun,
                    [ "--version" ],
                    UseShellExecute = false,
                    RedirectStandardOutput = true,
                    RedirectStandardError = true
                )

            use p = Process.Start info
            let error = p.StandardError.ReadToEndAsync()
            let output = p.StandardOutput.ReadToEndAsync()

            if not (p.WaitForExit 20_000) then
                p.Kill true
                Error(sprintf "%s --version did not answer within 20 s; check the MPI installation" mpirun)
            else
                MpiLaunch.identify (output.Result + error.Result)
                |> Result.map (fun found -> mpirun, found)
        with e ->
            Error(sprintf "%s --version could not be run (%s); check the MPI installation" mpirun e.Message))

let private underMpirun (processes: int) =
    match findMpirun () with
    | None ->
        eprintfn
            "blr: --nproc %d on the CPU starts its processes with mpirun, which is not installed; install OpenMPI \
             (apt-get install openmpi-bin, or `dotnet fsi build.fsx setup` as root) or MPICH (apt-get install mpich)"
            processes

        Exited 2
    | Some(Error problem) ->
        eprintfn "blr: --nproc %d: %s" processes problem
        Exited 2
    | Some(Ok(mpirun, found)) ->
        let program, args = self ()

        // Each rank that ends by itself leaves its exit code here (Program.main): one that leaves none died without
        // a word, whatever mpirun's exit code says (hydra can return 0 after a rank's SIGKILL). A folder of this run's
        // own (unique, readable by this user only), removed whatever happens.
        let status = Directory.CreateTempSubdirectory "blr-launch-"

        try
            let arguments, environment =
                MpiLaunch.command
                    found
                    (geteuid () = 0u)
                    [ "TERM", "dumb"; "BLR_LAUNCHED", "1"; "BLR_LAUNCH_STATUS", status.FullName ]
                    processes
                    program
                    (withoutNproc args)

            // In a session of its own: a Ctrl-C at the terminal reaches this launcher only, which passes it on to the
            // ranks.
            let info =
                ProcessStartInfo(
                    "setsid",
                    "--wait" :: mpirun :: arguments,
                    UseShellExecute = false,
                    RedirectStandardError = true,
                    RedirectStandardOutput = true
                )

            for name, value in environment do
                info.Environment[name] <- value

            use mpirunProcess = Process.Start info
            let errors = Relay(mpirunProcess.StandardError, Console.Error)
            let outputs = Relay(mpirunProcess.StandardOutput, Console.Out)
            let ranks = Collections.Generic.Dictionary<int, int>()
            let firstGone = ref None

            match supervise true [ mpirunProcess ] status.FullName processes ranks firstGone with
            | Killed ->
                errors.Finish(TimeSpan.FromSeconds 5.0)
                outputs.Finish(TimeSpan.FromSeconds 5.0)
                Killed
            | Stopped ->
                errors.Finish()
                outputs.Finish()
                Stopped
            | Exited code ->
                errors.Finish()
                outputs.Finish()

                let silent =
                    [ 0 .. processes - 1 ]
                    |> List.filter (fun rank -> not (File.Exists(exitFile status.FullName rank)))

                let held = errors.Held + outputs.Held
                let spoke = errors.Spoke || outputs.Spoke

                if not spoke && ranks.Count = 0 && silent.Length = processes then
                    // No rank ever started: mpirun itself refused (an option, slots, the program) and said why.
                    let said =
                        held.Split('\n')
                        |> Array.map (fun l -> l.Trim())
                        |> Array.tryFind (fun l -> l <> "" && not (MpiLaunch.isBannerRule l))
                        |> Option.defaultValue "it printed nothing"

                    eprintfn "blr: %O could not start the ranks (exit %d): %s" found code said
                    Exited 6
                elif not spoke && (code <> 0 || not silent.IsEmpty) then
                    let rankOfPid pid =
                        match ranks.TryGetValue pid with
                        | true, rank -> Some rank
                        | _ -> None

                    // A rank that left no exit code first; the first seen to end may have ended as planned.
                    let gone =
                        silent
                        |> List.tryFind (fun rank -> firstGone.Value = Some rank)
                        |> Option.orElse (List.tryHead silent)
                        |> Option.orElse firstGone.Value

                    eprintfn "blr: %s" (MpiLaunch.deathLine held code rankOfPid gone)
                    // A rank that failed (README's exit codes), whatever mpirun's own code for it was.
                    Exited 6
                else
                    Exited code
        finally
            try
                status.Delete true
            with _ ->
                ()

let private freePort () =
    let listener = new Net.Sockets.TcpListener(Net.IPAddress.Loopback, 0)
    listener.Start()
    let port = (listener.LocalEndpoint :?> Net.IPEndPoint).Port
    listener.Stop()
    port

let private perGpu (processes: int) =
    let program, args = self ()
    let port = freePort ()
    // Where each rank says it is ready for a stop signal (and leaves its exit code), removed whatever happens.
    let status = Directory.CreateTempSubdirectory "blr-launch-"

    try
        let children =
            [
                for rank in 0 .. processes - 1 ->
                    let info = ProcessStartInfo(program, withoutNproc args, UseShellExecute = false)

                    for name, value in
                        [
                            "RANK", string rank
                            "WORLD_SIZE", string processes
                            "LOCAL_RANK", string rank
                            "LOCAL_WORLD_SIZE", string processes
                            "MASTER_ADDR", "127.0.0.1"
                            "MASTER_PORT", string port
                            "BLR_LAUNCHED", "1"
                            "BLR_LAUNCH_STATUS", status.FullName
                        ] do
                        info.Environment[name] <- value

                    Process.Start info
            ]

        supervise false children status.FullName 0 (Collections.Generic.Dictionary()) (ref None)
    finally
        try
            status.Delete true
        with _ ->
            ()

/// Starts N processes of this command and waits for them.
let start (processes: int) (cuda: bool) =
    if cuda then perGpu processes else underMpirun processes
