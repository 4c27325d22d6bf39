module internal BlockwiseLR.Core.Tests.MpiLaunchTests

open System.IO
open Expecto
open BlockwiseLR
open BlockwiseLR.Core
open BlockwiseLR.Core.MpiLaunch

/// `mpirun --version` as each implementation printed it (captured from Debian's openmpi-bin 4.1.4 and, in Debian 13
/// roots, openmpi-bin 5.0.7 and mpich 4.2.1; tools/mpi-roots.sh builds those roots).
let private versionText name =
    File.ReadAllText(Safetensors.dataPath (Path.Combine("mpi", name + "-version.txt")))

let private openMpi4 =
    {
        Family = OpenMpi
        Major = 4
        Minor = 1
    }

let private openMpi5 = { openMpi4 with Major = 5; Minor = 0 }

let private mpich = { Family = Mpich; Major = 4; Minor = 2 }

let private exports = [ "TERM", "dumb"; "BLR_LAUNCHED", "1" ]

[<Tests>]
let tests =
    testList
        "MpiLaunch"
        [
            test "each implementation's --version reads as itself" {
                Expect.equal (identify (versionText "openmpi-4.1.4")) (Ok openMpi4) "Open MPI 4"
                Expect.equal (identify (versionText "openmpi-5.0.7")) (Ok openMpi5) "Open MPI 5"
                Expect.equal (identify (versionText "mpich-4.2.1")) (Ok mpich) "MPICH's hydra"
                Expect.equal (string openMpi5) "Open MPI 5.0" "its name"
            }

            test "an mpirun that is neither, or too old, is one line naming what it printed" {
                let refused text =
                    match identify text with
                    | Ok found -> failtestf "%s was accepted as %O" text found
                    | Error line -> line

                let intel =
                    refused "Intel(R) MPI Library for Linux* OS, Version 2021.10 Build 20230619\n"

                Expect.stringContains intel "'Intel(R) MPI Library for Linux* OS, Version 2021.10 Build" "names it"
                Expect.isFalse (intel.Contains "\n") "one line"
                Expect.stringContains (refused "") "printed 'nothing'" "empty output"
                Expect.stringContains (refused "mpirun (Open MPI) 3.1.6\n") "Open MPI 3.1 is older" "Open MPI 3"
            }

            test "Open MPI 4 gets a kill delay, 5 not; neither gets --quiet" {
                let args4, env4 = command openMpi4 true exports 2 "dotnet" [ "blr.dll"; "train" ]

                Expect.equal
                    args4
                    [
                        "--oversubscribe"
                        "--allow-run-as-root"
                        "--bind-to"
                        "none"
                        "--mca"
                        "odls_base_sigkill_timeout"
                        "10"
                        "-x"
                        "TERM=dumb"
                        "-x"
                        "BLR_LAUNCHED=1"
                        "-np"
                        "2"
                        "dotnet"
                        "blr.dll"
                        "train"
                    ]
                    "Open MPI 4"

                Expect.equal env4 [ "OMPI_MCA_btl_vader_single_copy_mechanism", "none" ] "vader's single copy off"
                let args5, env5 = command openMpi5 false exports 2 "dotnet" [ "blr.dll" ]
                // Open MPI 5 (PRRTE) exits 213 on --quiet; it has no odls_base_sigkill_timeout.
                Expect.isFalse (List.contains "--quiet" args5) "no --quiet"
                Expect.isFalse (List.contains "--mca" args5) "no kill delay"
                Expect.isFalse (List.contains "--allow-run-as-root" args5) "not root"

                Expect.equal
                    env5
                    [ "OMPI_MCA_smsc", "^cma"; "OMPI_MCA_btl", "self,sm" ]
                    "shared memory, no cross-memory attach"
            }

            test "MPICH's hydra gets -n, -genv NAME VALUE and -bind-to" {
                let args, env = command mpich true exports 2 "dotnet" [ "blr.dll"; "--lr"; "1" ]

                Expect.equal
                    args
                    [
                        "-bind-to"
                        "none"
                        "-genv"
                        "TERM"
                        "dumb"
                        "-genv"
                        "BLR_LAUNCHED"
                        "1"
                        "-n"
                        "2"
                        "dotnet"
                        "blr.dll"
                        "--lr"
                        "1"
                    ]
                    "hydra"

                Expect.isEmpty env "nothing else"
            }

            test "a rank's death reads as one line from each implementation's report" {
                // The reports each mpirun printed when rank 1 was killed with SIGKILL (banners included).
                let openMpi4Report =
                    "--------------------------------------------------------------------------\n\
                     mpirun noticed that process rank 1 with PID 0 on node vm exited on signal 9 (Killed).\n\
                     --------------------------------------------------------------------------\n"

                let mpichReport =
                    "===================================================================================\n\
                     =   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES\n\
                     =   RANK 1 PID 4242 RUNNING AT vm\n\
                     =   KILLED BY SIGNAL: 9 (Killed)\n\
                     ===================================================================================\n"

                for report in [ openMpi4Report; mpichReport ] do
                    Expect.stringStarts
                        (deathLine report 137 (fun _ -> None) None)
                        "rank 1 was killed by signal 9 (Killed), so the run stopped"
                        report

                Expect.stringStarts
                    (deathLine "" 1 (fun _ -> None) None)
                    "a rank ended without a word (mpirun exit 1)"
                    "no report"

                Expect.stringStarts (deathLine "" 137 (fun _ -> None) (Some 1)) "rank 1 ended without a word" "seen"

                Expect.isTrue
                    (isMpirunReport "[vm:01234] 1 more process has sent help message help-mpi-api.txt / mpi-abort")
                    "Open MPI's aggregated help"

                Expect.isFalse (isMpirunReport "blr (rank 1): internal error: x") "a rank's own line"
                // MPICH 4.2's box names the process id only; the launcher knows which rank that was.
                let hydraReport =
                    "===================================================================================\n\
                     =   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES\n\
                     =   PID 31364 RUNNING AT vm\n\
                     =   EXIT CODE: 9\n\
                     ===================================================================================\n\
                     YOUR APPLICATION TERMINATED WITH THE EXIT STRING: Killed (signal 9)\n"

                Expect.stringStarts
                    (deathLine hydraReport 9 (fun pid -> if pid = 31364 then Some 1 else None) None)
                    "rank 1 was killed by signal 9, so the run stopped"
                    "by its pid"

                Expect.isTrue
                    (isMpirunReport "YOUR APPLICATION TERMINATED WITH THE EXIT STRING: Killed (signal 9)")
                    "hydra"

                Expect.isTrue (isBannerRule (String.replicate 74 "-")) "dashes"
                Expect.isTrue (isBannerRule (String.replicate 83 "=")) "equals"
                Expect.isFalse (isBannerRule "---") "short"
                Expect.isFalse (isBannerRule "blr: --- x") "text"
            }
        ]
