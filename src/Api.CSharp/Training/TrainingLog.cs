using Microsoft.Extensions.Logging;

namespace BlockwiseLR.Training;

/// <summary>What the trainer tells an <see cref="ILogger"/> (<see cref="Trainer.WithLogger"/>): notes and the run's
/// start and end at Information, progress at Information every few steps, at every evaluation and at the last
/// step. Event ids: 1 note, 2 start, 3 progress, 4 end.</summary>
static partial class TrainingLog
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "{Note}")]
    public static partial void Note(ILogger logger, string note);

    [LoggerMessage(
        EventId = 2,
        Level = LogLevel.Information,
        Message = "Training {Steps} steps from step {StartStep} into {RunDirectory}"
    )]
    public static partial void Start(ILogger logger, int steps, int startStep, string runDirectory);

    [LoggerMessage(
        EventId = 3,
        Level = LogLevel.Information,
        Message = "Step {Step}/{Steps}: train loss {Loss:F4}, val loss {ValLoss:F4}, {TokensPerSecond:F0} tokens/s"
    )]
    public static partial void Progress(
        ILogger logger,
        int step,
        int steps,
        double loss,
        double? valLoss,
        double tokensPerSecond
    );

    [LoggerMessage(
        EventId = 4,
        Level = LogLevel.Information,
        Message = "Finished {Steps} steps (interrupted: {Interrupted}): final val loss {FinalValLoss:F4}, best "
            + "{BestValLoss:F4}"
    )]
    public static partial void End(
        ILogger logger,
        int steps,
        bool interrupted,
        double? finalValLoss,
        double? bestValLoss
    );

    /// <summary>Progress is logged every this many steps (about 20 lines a run) unless told.</summary>
    public static int DefaultEvery(int steps) => Math.Max(1, steps / 20);
}
