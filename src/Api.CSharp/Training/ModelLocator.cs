using BlockwiseLR.Models;
using static TorchSharp.torch;

namespace BlockwiseLR.Training;

/// <summary>Finds a model: a Hugging Face folder or checkpoint (config.json + model.safetensors), or a run folder
/// (its latest checkpoint).</summary>
public static class ModelLocator
{
    /// <summary>The model folder <paramref name="path"/> names: itself when it holds config.json, else its latest
    /// checkpoint; neither is an <see cref="ArgumentException"/>.</summary>
    public static string Resolve(string path)
    {
        if (File.Exists(Path.Combine(path, "config.json")))
            return path;
        var latest = Path.Combine(Checkpoints.Folder(path), Checkpoints.LatestFile);
        if (File.Exists(latest))
            return Path.Combine(Checkpoints.Folder(path), File.ReadAllText(latest).Trim());
        throw new ArgumentException(
            $"{path}: not a model (no config.json) and not a run folder (no checkpoints/latest)"
        );
    }

    /// <summary>Loads the model <paramref name="path"/> names (see <see cref="Resolve"/>) onto <paramref
    /// name="device"/> (default the CPU).</summary>
    public static LanguageModel Load(string path, Device? device = null) => HfFormat.Load(Resolve(path), device);
}
