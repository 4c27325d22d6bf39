namespace BlockwiseLR.Distributed;

/// <summary>Processes cannot meet or talk (MPI or NCCL missing or failing, a rank that disagrees). The message
/// is one line: what failed and how to fix it.</summary>
public sealed class DistributedException(string message, bool sameOnEveryRank = false) : Exception(message)
{
    /// <summary>Every rank of the run throws this same exception (a check they made together).</summary>
    public bool SameOnEveryRank { get; } = sameOnEveryRank;
}
