namespace BlockwiseLR;

/// <summary>An option that cannot be used: <see cref="Option"/> is its property name (e.g. "Lr",
/// "WarmupSteps"), <see cref="Value"/> the value given, <see cref="Problem"/> what is wrong and what to do. The
/// message reads "Lr = NaN: must be a finite number > 0"; a front end (the blr CLI) can say the same with its
/// own name for the option.</summary>
public sealed class InvalidOptionException : ArgumentException
{
    /// <summary>An error about <paramref name="option"/> (its property name) given <paramref name="value"/> (null when
    /// missing): <paramref name="problem"/> says what is wrong and what to do; <paramref name="configFile"/> is the
    /// config file it came from, if any.</summary>
    public InvalidOptionException(string option, string? value, string problem, string? configFile = null)
        : base(
            $"{(configFile is null ? "" : configFile + ": ")}{option}{(value is null ? "" : " = " + value)}: {problem}"
        )
    {
        Option = option;
        Value = value;
        Problem = problem;
        ConfigFile = configFile;
    }

    /// <summary>The option's property name (PretrainOptions.Lr is "Lr").</summary>
    public string Option { get; }

    /// <summary>The value as given, or null when the option is missing.</summary>
    public string? Value { get; }

    /// <summary>What is wrong and what to do, e.g. "must be a finite number > 0".</summary>
    public string Problem { get; }

    /// <summary>The config file the value came from, if any.</summary>
    public string? ConfigFile { get; }
}
