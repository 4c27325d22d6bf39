using System.Globalization;

namespace BlockwiseLR.Distributed;

/// <summary>Where this process sits among the processes of one run, as its launcher told it through the
/// environment: mpirun (OMPI_COMM_WORLD_*, or PMI_* for MPICH) or a torchrun-style launcher
/// (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT; what `blr train --nproc` sets on
/// CUDA).</summary>
/// <param name="Rank">This process's index in the run.</param>
/// <param name="WorldSize">Processes in the run.</param>
/// <param name="LocalRank">This process's index on its machine (it picks the GPU).</param>
/// <param name="LocalWorldSize">Processes of the run on this machine.</param>
/// <param name="UnderMpi">True when launched by mpirun.</param>
/// <param name="RendezvousHost">MASTER_ADDR of a torchrun-style launch (null otherwise).</param>
/// <param name="RendezvousPort">MASTER_PORT of a torchrun-style launch (null otherwise).</param>
public sealed record LaunchInfo(
    int Rank,
    int WorldSize,
    int LocalRank,
    int LocalWorldSize,
    bool UnderMpi,
    string? RendezvousHost,
    int? RendezvousPort
)
{
    /// <summary>A process launched alone: rank 0 of a world of 1.</summary>
    public static LaunchInfo SingleProcess { get; } = new(0, 1, 0, 1, false, null, null);

    /// <summary>Reads the launcher's variables; a process started by hand is a world of one.</summary>
    public static LaunchInfo FromEnvironment()
    {
        static int? Int(string name) =>
            int.TryParse(
                Environment.GetEnvironmentVariable(name),
                NumberStyles.Integer,
                CultureInfo.InvariantCulture,
                out var v
            )
                ? v
                : null;
        if (Int("OMPI_COMM_WORLD_SIZE") is { } ompiSize)
            return new(
                Int("OMPI_COMM_WORLD_RANK") ?? 0,
                ompiSize,
                Int("OMPI_COMM_WORLD_LOCAL_RANK") ?? 0,
                Int("OMPI_COMM_WORLD_LOCAL_SIZE") ?? ompiSize,
                true,
                null,
                null
            );
        if (Int("PMI_SIZE") is { } pmiSize)
            return new(
                Int("PMI_RANK") ?? 0,
                pmiSize,
                Int("MPI_LOCALRANKID") ?? 0,
                Int("MPI_LOCALNRANKS") ?? pmiSize,
                true,
                null,
                null
            );
        if (Int("WORLD_SIZE") is { } size && size > 1)
            return new(
                Int("RANK") ?? 0,
                size,
                Int("LOCAL_RANK") ?? 0,
                Int("LOCAL_WORLD_SIZE") ?? size,
                false,
                Environment.GetEnvironmentVariable("MASTER_ADDR") ?? "127.0.0.1",
                Int("MASTER_PORT") ?? 29500
            );
        return SingleProcess;
    }
}
