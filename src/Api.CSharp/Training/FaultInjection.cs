namespace BlockwiseLR.Training;

/// <summary>Fault injection for the crash tests, an internal test seam: BLR_FAULT=hang-during-checkpoint or
/// hang-after-checkpoint (optionally @STEP, e.g. hang-during-checkpoint@4) makes the process stop there until it is
/// killed; BLR_FAULT=bug-before-training throws an unexpected exception (the CLI's last-resort handler).</summary>
static class FaultInjection
{
    /// <summary>BLR_FAULT_RANK=R limits a fault to rank R of a data-parallel run.</summary>
    static bool ThisRank() =>
        Environment.GetEnvironmentVariable("BLR_FAULT_RANK") is not { } rank
        || rank == Distributed.LaunchInfo.FromEnvironment().Rank.ToString();

    public static void Bug(string point)
    {
        if (Environment.GetEnvironmentVariable("BLR_FAULT") == point && ThisRank())
            throw new InvalidOperationException($"BLR_FAULT: {point}\nsecond line of the message");
    }

    /// <summary>Throws at the start of step <paramref name="step"/> when BLR_FAULT is POINT@STEP.</summary>
    public static void Bug(string point, int step)
    {
        if (Environment.GetEnvironmentVariable("BLR_FAULT") == $"{point}@{step}" && ThisRank())
            throw new InvalidOperationException($"BLR_FAULT: {point} at step {step}\nsecond line of the message");
    }

    public static void Hang(string point, int step)
    {
        var fault = Environment.GetEnvironmentVariable("BLR_FAULT");
        if (fault != point && fault != $"{point}@{step}")
            return;
        Console.Error.WriteLine($"BLR_FAULT: {point} at step {step}");
        Thread.Sleep(Timeout.Infinite);
    }
}
