using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using BlockwiseLR.Core;

namespace BlockwiseLR;

/// <summary>The settings of sharpness-adaptive ratios (<see cref="BlockRatios.Auto"/>): r_b = clamp((S_norm /
/// S_b)^Alpha, 1, MaxRatio) from the proxy sharpness of every step's gradients, smoothed by an exponential moving
/// average (Smoothing), applied every Every steps; with Noise, each block's sharpness is raised by its gradient
/// noise at the run's batch size (docs/method.md section 9). Alpha 0.25 comes from the README's measurement (0.5
/// kept only 60% of AdamW's level where the paper ratios lose; 0.25 beat AdamW there and kept all of the paper
/// ratios' gain where they win).</summary>
public sealed record AutoRatioSettings
{
    /// <summary>The exponent of the sharpness ratio (S_norm / S_b); default 0.25.</summary>
    public double Alpha { get; init; } = 0.25;

    /// <summary>The largest ratio a block may get (ratios are clamped to [1, MaxRatio]); default 10.</summary>
    public double MaxRatio { get; init; } = 10;

    /// <summary>Steps between updates of the ratios; default 10.</summary>
    public int Every { get; init; } = 10;

    /// <summary>The weight of the old value in the exponential moving average of each block's sharpness, in [0, 1);
    /// default 0.9.</summary>
    public double Smoothing { get; init; } = 0.9;

    /// <summary>The noise correction: S'_b = S_b (1 + B_noise,b / B), B_noise measured every step from the first
    /// micro-batch against the whole batch, or, with one micro-batch, from its first half against the whole (the
    /// batch then runs as two halves). Off: the sharpness rule alone. A batch of one sequence has no noise
    /// measurement.</summary>
    public bool Noise { get; init; } = true;

    /// <summary>The defaults.</summary>
    public static AutoRatioSettings Default { get; } = new();

    /// <summary>A one-line reason these settings cannot be used, or null.</summary>
    public string? Problem() =>
        !(Alpha > 0) || double.IsInfinity(Alpha) ? $"alpha {Fmt(Alpha)} must be a finite number > 0"
        : !(MaxRatio >= 1) || double.IsInfinity(MaxRatio) ? $"max-ratio {Fmt(MaxRatio)} must be a finite number >= 1"
        : Every < 1 ? $"every {Every} must be >= 1"
        : !(Smoothing >= 0 && Smoothing < 1) ? $"smoothing {Fmt(Smoothing)} must be in [0, 1)"
        : null;

    internal static string Fmt(double x) => x.ToString("R", CultureInfo.InvariantCulture);
}

/// <summary>Peak-LR multipliers per block (peak = ratio x base LR): the paper's, uniform (plain AdamW), a map of
/// your own, or auto (set during the run from measured sharpness, starting from uniform). Written and read as
/// text: "paper", "uniform", "paper,head=10", "emb=10,qk=8,vo=4,ffn=6,norm=1", "auto" or
/// "auto:alpha=0.25,max-ratio=10,every=10,smoothing=0.9,noise=on".</summary>
[JsonConverter(typeof(BlockRatiosConverter))]
public sealed class BlockRatios : IEquatable<BlockRatios>
{
    internal RatioSpec Spec { get; }

    BlockRatios(RatioSpec spec, AutoRatioSettings? auto = null) => (Spec, AutoSettings) = (spec, auto);

    /// <summary>Norm 1, VO 4, FFN 6, QK 8, Embedding 10, PositionEmbedding 1; the head follows the embedding
    /// when tied, 1 when untied.</summary>
    public static BlockRatios Paper { get; } = new(RatioRules.Paper);

    /// <summary>Every block at the base LR: plain AdamW.</summary>
    public static BlockRatios Uniform { get; } = new(RatioRules.Uniform);

    /// <summary>Ratios set from measured sharpness during the run (uniform until the first update).</summary>
    public static BlockRatios Auto(AutoRatioSettings? settings = null)
    {
        var chosen = settings ?? AutoRatioSettings.Default;
        if (chosen.Problem() is { } problem)
            throw new ArgumentException($"auto ratios: {problem}", nameof(settings));
        return new(RatioRules.Uniform, chosen);
    }

    /// <summary>A map of your own; blocks not named get ratio 1, the head follows the paper's default unless
    /// named.</summary>
    public static BlockRatios Of(IReadOnlyDictionary<Block, double> ratios) =>
        ratios.Count == 0
            ? Uniform
            : Parse(string.Join(",", ratios.Select(kv => $"{kv.Key.Key()}={AutoRatioSettings.Fmt(kv.Value)}")));

    /// <summary>The auto settings, or null for fixed ratios.</summary>
    public AutoRatioSettings? AutoSettings { get; }

    /// <summary>True for sharpness-adaptive ratios (<see cref="AutoSettings"/> is not null), false for fixed
    /// ones.</summary>
    public bool IsAuto => AutoSettings is not null;

    /// <summary>Reads the text forms above (any case). Throws <see cref="FormatException"/> with a one-line
    /// message.</summary>
    public static BlockRatios Parse(string text)
    {
        var trimmed = (text ?? "").Trim();
        if (trimmed.Equals("auto", StringComparison.OrdinalIgnoreCase))
            return Auto();
        if (trimmed.StartsWith("auto:", StringComparison.OrdinalIgnoreCase))
            return new(RatioRules.Uniform, ParseAuto(trimmed));
        return new BlockRatios(RatioRules.Parse(trimmed).OrThrow(reason => new FormatException(reason)));
    }

    static AutoRatioSettings ParseAuto(string text)
    {
        var settings = AutoRatioSettings.Default;
        foreach (
            var item in text["auto:".Length..]
                .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
        )
        {
            var parts = item.Split('=', StringSplitOptions.TrimEntries);
            if (parts.Length == 2 && parts[0].Equals("noise", StringComparison.OrdinalIgnoreCase))
            {
                settings = settings with
                {
                    Noise = ParseSwitch(parts[1])
                        ?? throw new FormatException($"ratios '{text}': noise={parts[1]} must be on or off"),
                };
                continue;
            }
            if (
                parts.Length != 2
                || !double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out var x)
            )
                throw new FormatException(
                    $"ratios '{text}': '{item}' is not KEY=NUMBER (keys: alpha, max-ratio, every, smoothing, noise)"
                );
            settings = parts[0].ToLowerInvariant() switch
            {
                "alpha" => settings with { Alpha = x },
                "max-ratio" => settings with { MaxRatio = x },
                "every" when x == Math.Floor(x) && x is >= 1 and <= int.MaxValue => settings with { Every = (int)x },
                "every" => throw new FormatException($"ratios '{text}': every={parts[1]} must be a whole number >= 1"),
                "smoothing" => settings with { Smoothing = x },
                var other => throw new FormatException(
                    $"ratios '{text}': unknown key '{other}' (keys: alpha, max-ratio, every, smoothing, noise)"
                ),
            };
        }
        if (settings.Problem() is { } problem)
            throw new FormatException($"ratios '{text}': {problem}");
        return settings;
    }

    /// <summary>on/off, true/false, 1/0 (any case); null for anything else.</summary>
    internal static bool? ParseSwitch(string text) =>
        text.Trim().ToLowerInvariant() switch
        {
            "on" or "true" or "1" => true,
            "off" or "false" or "0" => false,
            _ => null,
        };

    /// <summary>Checks the ratios for a model whose head is (or is not) tied to the embedding.</summary>
    public BlockRatios Validate(bool tiedHead)
    {
        RatioRules.Validate(tiedHead, Spec).OrThrow(reason => new ArgumentException(reason));
        return this;
    }

    /// <summary>The ratio of one block (auto ratios: 1, their starting point).</summary>
    public double For(Block block, bool tiedHead) => RatioRules.RatioOf(tiedHead, Spec, block.ToCore());

    /// <summary>The text <see cref="Parse"/> reads back.</summary>
    public override string ToString() =>
        AutoSettings switch
        {
            null => RatioRules.Format(Spec),
            var s when s == AutoRatioSettings.Default => "auto",
            var s => $"auto:alpha={AutoRatioSettings.Fmt(s.Alpha)},max-ratio={AutoRatioSettings.Fmt(s.MaxRatio)},"
                + $"every={s.Every},smoothing={AutoRatioSettings.Fmt(s.Smoothing)}"
                + (s.Noise ? "" : ",noise=off"),
        };

    /// <summary>True when <paramref name="other"/> has the same fixed ratios and the same auto settings.</summary>
    public bool Equals(BlockRatios? other) =>
        other is not null && Spec.Equals(other.Spec) && Equals(AutoSettings, other.AutoSettings);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => Equals(obj as BlockRatios);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Spec, AutoSettings);
}

sealed class BlockRatiosConverter : TextConverter<BlockRatios>
{
    protected override string Expected => "expected text such as paper, uniform, auto or emb=10,qk=8,vo=4,ffn=6,norm=1";

    protected override BlockRatios Parse(string text) => BlockRatios.Parse(text);
}
