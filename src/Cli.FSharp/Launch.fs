/// `blr train --nproc N`: starts the N processes of a data-parallel run for a user who has not used MPI. On the
/// CPU it runs this same command under mpirun (OpenMPI); on CUDA it starts one process per GPU itself, as
/// torchrun does (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), and NCCL meets
/// over a TCP socket at that address: no MPI needed.
module BlockwiseLR.Cli.Launch

open System
open System.Diagnostics
open System.IO
open System.Runtime.InteropServices

/// Seconds mpirun waits after sending SIGTERM before it sends SIGKILL (OpenMPI 4.1's default is 1). Measured
/// here: tearing down a job after a rank dies takes about twice this (120 s at 60), so it stays short; a Ctrl-C of
/// `--nproc` does not go through mpirun's kill at all (see supervise), so its checkpoint is not bound by it.
let killDelaySeconds = 10

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

/// Waits for the children (each with this console), the first failure ending the others; returns the exit code
/// of the first to fail, else 0. SIGINT or SIGTERM to this launcher becomes SIGTERM to every process of the run
/// (the ranks themselves, not mpirun, whose kill would follow with SIGKILL): the ranks agree on the step to stop
/// at, rank 0 checkpoints, and the launcher exits with 130.
let private supervise (viaMpirun: bool) (children: Process list) =
    let mutable signalled = false

    let stop (c: PosixSignalContext) =
        c.Cancel <- true
        signalled <- true

        for p in children do
            for pid in (if viaMpirun then descendants p.Id else [ p.Id ]) do
                kill (pid, sigterm) |> ignore

    use _int = PosixSignalRegistration.Create(PosixSignal.SIGINT, stop)
    use _term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, stop)
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
        | None -> Threading.Thread.Sleep 50

    if code = 0 && signalled then 130 else code

/// The command line mpirun is given for N ranks of this command.
let mpirunArguments (processes: int) (program: string) (args: string list) =
    [
        "-np"
        string processes
        "--quiet" // no help banners: each rank's own line says what failed
        // Always: OpenMPI counts physical cores as slots, and without binding more ranks than cores only share them.
        "--oversubscribe"
        yield! (if geteuid () = 0u then [ "--allow-run-as-root" ] else [])
        "--bind-to"
        "none"
        "--mca"
        "odls_base_sigkill_timeout"
        string killDelaySeconds
        "-x"
        "TERM=dumb"
        "-x"
        "BLR_LAUNCHED=1"
        program
        yield! args
    ]

let private underMpirun (processes: int) =
    match onPath "mpirun" with
    | None ->
        eprintfn
            "blr: --nproc %d on the CPU starts its processes with mpirun, which is not installed; install OpenMPI \
             (apt-get install openmpi-bin, or `dotnet fsi build.fsx setup` as root)"
            processes

        2
    | Some mpirun ->
        let program, args = self ()
        // In a session of its own: a Ctrl-C at the terminal reaches this launcher only, which passes it on to the
        // ranks.
        let info =
            ProcessStartInfo(
                "setsid",
                "--wait" :: mpirun :: mpirunArguments processes program (withoutNproc args),
                UseShellExecute = false
            )

        info.Environment["OMPI_MCA_btl_vader_single_copy_mechanism"] <- "none"
        supervise true [ Process.Start info ]

let private freePort () =
    let listener = new Net.Sockets.TcpListener(Net.IPAddress.Loopback, 0)
    listener.Start()
    let port = (listener.LocalEndpoint :?> Net.IPEndPoint).Port
    listener.Stop()
    port

let private perGpu (processes: int) =
    let program, args = self ()
    let port = freePort ()

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
                    ] do
                    info.Environment[name] <- value

                Process.Start info
        ]

    supervise false children

/// Starts N processes of this command and waits for them: the exit code of the first to fail, else 0.
let start (processes: int) (cuda: bool) =
    if cuda then perGpu processes else underMpirun processes
