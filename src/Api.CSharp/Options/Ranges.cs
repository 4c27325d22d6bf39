using System.Globalization;
using BlockwiseLR.Core;

namespace BlockwiseLR;

/// <summary>The library's check of a numeric option against its flag's range in the core's table (OptionRanges.fs:
/// what <c>blr --help</c> shows and the CLI checks first).</summary>
internal static class Ranges
{
    /// <summary>Throws an <see cref="InvalidOptionException"/> naming <paramref name="option"/> when
    /// <paramref name="value"/> is outside the range of <paramref name="flag"/> ("threads", "lr").</summary>
    public static void Check(string option, string flag, double value)
    {
        if (RangeRules.Check(flag, value) is { } problem)
            throw new InvalidOptionException(option, value.ToString("R", CultureInfo.InvariantCulture), problem);
    }
}
