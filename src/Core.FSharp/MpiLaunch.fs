/// How `blr train --nproc N` starts N ranks with the mpirun it finds. The three implementations a Linux user has take
/// different options: OpenMPI 4 (mpirun/orterun), OpenMPI 5 (mpirun over PRRTE, which rejects --quiet and has no
/// odls_base_sigkill_timeout) and MPICH (hydra's mpiexec: -n, -genv, oversubscription allowed by default). The
/// implementation and its version are read from `mpirun --version`; only options it accepts are passed.
module internal BlockwiseLR.Core.MpiLaunch

open System
open System.Text.RegularExpressions

/// The MPI implementation behind an mpirun.
type internal MpiFamily =
    /// OpenMPI (4: mpirun/orterun; 5: mpirun over PRRTE).
    | OpenMpi
    /// MPICH (hydra's mpiexec).
    | Mpich

/// An mpirun: its implementation and version.
type internal Mpirun =
    {
        /// The implementation.
        Family: MpiFamily
        /// The major version.
        Major: int
        /// The minor version.
        Minor: int
    }

    /// The implementation and version, e.g. "Open MPI 4.1".
    override this.ToString() =
        let name =
            match this.Family with
            | OpenMpi -> "Open MPI"
            | Mpich -> "MPICH"

        sprintf "%s %d.%d" name this.Major this.Minor

/// The oldest OpenMPI whose mpirun the launcher knows (Debian 11 ships 4.1; 3.x and older were not tried).
let oldestOpenMpi = 4

/// The oldest MPICH whose hydra the launcher accepts (its options have not changed since 3.0; 4.0 and 4.2 were run).
let oldestMpich = 3

/// The implementation and version that `mpirun --version` printed, or what is wrong with it (one line).
let identify (versionText: string) : Result<Mpirun, string> =
    let text = if isNull versionText then "" else versionText
    let openMpi = Regex.Match(text, @"\(Open MPI\)\s+(\d+)\.(\d+)")
    // Hydra (MPICH and its derivatives) prints "HYDRA build details:" and then "Version: X.Y.Z".
    let hydra =
        Regex.Match(text, @"HYDRA build details:\s*\n\s*Version:\s+(\d+)\.(\d+)")

    let firstLine =
        text.Split('\n', StringSplitOptions.RemoveEmptyEntries)
        |> Array.tryHead
        |> Option.map (fun l -> l.Trim())
        |> Option.defaultValue "nothing"

    let version (m: Match) family =
        {
            Family = family
            Major = int m.Groups[1].Value
            Minor = int m.Groups[2].Value
        }

    if openMpi.Success then
        let found = version openMpi OpenMpi

        if found.Major < oldestOpenMpi then
            Error(
                sprintf "%O is older than the oldest this launcher knows (Open MPI 4.0); install Open MPI 4 or 5" found
            )
        else
            Ok found
    elif hydra.Success then
        let found = version hydra Mpich

        if found.Major < oldestMpich then
            Error(
                sprintf
                    "%O is older than the oldest this launcher knows (MPICH 3.0); install MPICH 4 (apt-get install \
                     mpich)"
                    found
            )
        else
            Ok found
    else
        Error(
            sprintf
                "`mpirun --version` printed '%s', which is neither Open MPI nor MPICH's hydra; install Open MPI \
                 (apt-get install openmpi-bin) or MPICH (apt-get install mpich)"
                firstLine
        )

/// Seconds OpenMPI 4's mpirun waits after SIGTERM before SIGKILL when it tears down a job (its default is 1).
/// OpenMPI 5 and MPICH have no such setting. A Ctrl-C of `--nproc` does not go through mpirun's kill at all (the
/// launcher signals the ranks), so a checkpoint is not bound by it.
let openMpi4KillDelaySeconds = 10

/// The command line and the extra environment for mpirun to start `processes` ranks of one program. `exports` are
/// variables every rank must see; `asRoot` when this process runs as root (OpenMPI refuses root without
/// --allow-run-as-root; MPICH does not ask).
let command
    (mpirun: Mpirun)
    (asRoot: bool)
    (exports: (string * string) list)
    (processes: int)
    (program: string)
    (arguments: string list)
    =
    match mpirun.Family with
    | OpenMpi ->
        let options =
            [
                // No --quiet: Open MPI 5 rejects it (exit 213), and 4's would also drop the line that names a killed
                // rank; the launcher keeps mpirun's own reports back itself (isBannerRule, isMpirunReport).
                // Always: OpenMPI counts physical cores as slots, and without binding more ranks than cores only
                // share them. Both 4 and 5 accept --oversubscribe.
                "--oversubscribe"
                if asRoot then
                    "--allow-run-as-root"
                "--bind-to"
                "none"
                if mpirun.Major = 4 then
                    yield! [ "--mca"; "odls_base_sigkill_timeout"; string openMpi4KillDelaySeconds ]
                for name, value in exports do
                    yield! [ "-x"; sprintf "%s=%s" name value ]
                "-np"
                string processes
                program
                yield! arguments
            ]
        // Containers often forbid the cross-memory attach that shared-memory single copies use (4: btl vader;
        // 5: the smsc framework). All ranks share this machine, so Open MPI 5 is kept to shared memory: its tcp
        // transport otherwise prints a warning per rank where it finds no pair of interfaces (a container).
        let environment =
            if mpirun.Major = 4 then
                [ "OMPI_MCA_btl_vader_single_copy_mechanism", "none" ]
            else
                [ "OMPI_MCA_smsc", "^cma"; "OMPI_MCA_btl", "self,sm" ]

        options, environment
    | Mpich ->
        let options =
            [
                // Hydra oversubscribes by default and runs as root without a flag.
                "-bind-to"
                "none"
                for name, value in exports do
                    yield! [ "-genv"; name; value ]
                "-n"
                string processes
                program
                yield! arguments
            ]

        options, []

/// The rule lines around what mpirun prints of its own when a job ends badly: Open MPI's help banners (between
/// lines of dashes) and MPICH's "BAD TERMINATION" box (between lines of '='), which the launcher keeps from the user.
let isBannerRule (line: string) =
    let t = line.Trim()

    t.Length >= 20
    && (t |> Seq.forall (fun c -> c = '-') || t |> Seq.forall (fun c -> c = '='))

/// A line of mpirun's own report outside its banners: Open MPI's "mpirun noticed that ..." and "Primary job
/// terminated ...", and the three lines hydra prints after its box.
let isMpirunReport (line: string) =
    line.Contains " noticed that "
    // Open MPI's aggregated help notes: "[host:pid] 1 more process has sent help message ...".
    || Regex.IsMatch(line, @"^\[[^\]\s]+:\d+\] ")
    || line.StartsWith "Primary job"
    || line.StartsWith "YOUR APPLICATION TERMINATED WITH THE EXIT STRING"
    || line.StartsWith "This typically refers to a problem with your application"
    || line.StartsWith "Please see the FAQ page for debugging suggestions"

/// One line for a run that mpirun ended because a rank died without saying why (killed, out of memory): the rank
/// and the signal or exit code, read from mpirun's own report when it has one.
/// `rankOfPid` names the rank of a process id where the report gives only that (MPICH's); `firstGone` is the rank
/// the launcher saw end first, where the report names none.
let deathLine (mpirunReport: string) (mpirunExit: int) (rankOfPid: int -> int option) (firstGone: int option) =
    let rank = Regex.Match(mpirunReport, @"(?i)\brank\s+(\d+)")
    let pid = Regex.Match(mpirunReport, @"\bPID\s+(\d+)")
    let signal = Regex.Match(mpirunReport, @"(?i)signal:?\s+(\d+)(?:\s*\(([^)]+)\))?")

    let exitCode =
        Regex.Match(mpirunReport, @"(?i)exit(?:ed with)?\s+(?:status|code):?\s+(\d+)")

    let who =
        if rank.Success then
            sprintf "rank %s" rank.Groups[1].Value
        else
            let byPid =
                if pid.Success then
                    rankOfPid (int pid.Groups[1].Value)
                else
                    None

            match byPid |> Option.orElse firstGone with
            | Some r -> sprintf "rank %d" r
            | None -> "a rank"

    let how =
        if signal.Success then
            let name =
                if signal.Groups[2].Success then
                    sprintf " (%s)" signal.Groups[2].Value
                else
                    ""

            sprintf "was killed by signal %s%s" signal.Groups[1].Value name
        elif exitCode.Success then
            sprintf "ended with exit code %s" exitCode.Groups[1].Value
        else
            sprintf "ended without a word (mpirun exit %d)" mpirunExit

    sprintf
        "%s %s, so the run stopped (out of memory or killed by hand?); resume it from its last checkpoint with \
         --resume latest"
        who
        how
