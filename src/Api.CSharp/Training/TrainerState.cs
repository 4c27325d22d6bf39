using System.Text.Json.Serialization;
using BlockwiseLR.Core;

namespace BlockwiseLR.Training;

/// <summary>Everything besides tensors that a checkpoint holds (its trainer.json). All randomness comes from the
/// seed and the sampler position (initialization draws from an explicit generator; training itself draws nothing),
/// so these two are the complete RNG state.</summary>
public sealed record TrainerState
{
    /// <summary>Optimizer steps done.</summary>
    public required int Step { get; init; }

    /// <summary>The sampler's position: the epoch of the data order and the next window in it.</summary>
    public int SamplerEpoch { get; init; }

    /// <summary>The index of the next window in the epoch's order.</summary>
    public long SamplerIndex { get; init; }

    /// <summary>The run's seed (initialization and data order).</summary>
    public ulong Seed { get; init; }

    /// <summary>The model's config (null: a model of your own).</summary>
    public ModelConfig? Model { get; init; }

    /// <summary>The library version that wrote the checkpoint.</summary>
    public string CodeVersion { get; init; } = "";

    /// <summary>The train loss of every step done.</summary>
    public List<double> TrainLosses { get; init; } = [];

    /// <summary>The evaluations done so far.</summary>
    public List<EvalPoint> Evals { get; init; } = [];

    /// <summary>The run's effective options.</summary>
    public required PretrainOptions Options { get; init; }

    /// <summary>The tokenizer of the data (null: data of your own).</summary>
    public Data.TokenizerRecord? Tokenizer { get; init; }

    /// <summary>The micro-batch the steps ran, in sequences per process (null: a checkpoint of an earlier version):
    /// a resume at another number of processes keeps it unless the options set one.</summary>
    public int? MicroBatch { get; init; }

    /// <summary>The noise-scale measurement's state (null: not measured).</summary>
    public NoiseScaleCheckpoint? NoiseScale { get; init; }

    /// <summary>The state of auto ratios (null: fixed ratios).</summary>
    [JsonIgnore]
    public AutoRatioCheckpoint? Auto
    {
        get =>
            autoSmoothed is null
                ? null
                : new(autoSteps, autoSmoothed, autoRatios ?? [], autoSmallSquared ?? [], autoBigSquared ?? [])
                {
                    Noise = autoNoise,
                };
        init =>
            (autoSteps, autoSmoothed, autoRatios, autoSmallSquared, autoBigSquared, autoNoise) = (
                value?.Steps ?? 0,
                value?.Smoothed,
                value?.Ratios,
                value?.SmallSquared,
                value?.BigSquared,
                value?.Noise
            );
    }

    // trainer.json keeps the auto part as top-level keys, as every earlier version wrote it (autoNoise since 0.3).
    int autoSteps;
    Dictionary<string, double>? autoSmoothed,
        autoRatios,
        autoSmallSquared,
        autoBigSquared;
    NoiseScaleCheckpoint? autoNoise;

    [JsonInclude, JsonPropertyName("autoSteps")]
    int AutoSteps
    {
        get => autoSteps;
        init => autoSteps = value;
    }

    [JsonInclude, JsonPropertyName("autoSmoothed")]
    Dictionary<string, double>? AutoSmoothed
    {
        get => autoSmoothed;
        init => autoSmoothed = value;
    }

    [JsonInclude, JsonPropertyName("autoRatios")]
    Dictionary<string, double>? AutoRatios
    {
        get => autoRatios;
        init => autoRatios = value;
    }

    [JsonInclude, JsonPropertyName("autoSmallSquared")]
    Dictionary<string, double>? AutoSmallSquared
    {
        get => autoSmallSquared;
        init => autoSmallSquared = value;
    }

    [JsonInclude, JsonPropertyName("autoBigSquared")]
    Dictionary<string, double>? AutoBigSquared
    {
        get => autoBigSquared;
        init => autoBigSquared = value;
    }

    [JsonInclude, JsonPropertyName("autoNoise")]
    NoiseScaleCheckpoint? AutoNoise
    {
        get => autoNoise;
        init => autoNoise = value;
    }
}
