using BlockwiseLR.Core;

namespace BlockwiseLR;

/// <summary>A schedule that cannot be used: <see cref="Field"/> is the part it is about, the message what is wrong
/// and what to do.</summary>
public sealed class ScheduleException(ScheduleField field, string message) : ArgumentException(message)
{
    /// <summary>The part of the schedule the error is about.</summary>
    public ScheduleField Field { get; } = field;
}
