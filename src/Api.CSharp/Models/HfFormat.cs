using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using BlockwiseLR.Core;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace BlockwiseLR.Models;

/// <summary>
/// Hugging Face format (config.json + model.safetensors) for GPT-2 and LLaMA, read and written through
/// TorchSharp.PyBridge. GPT-2 files keep HF's Conv1D (in, out) weights and fused attn.c_attn; importing
/// transposes them and splits c_attn into q/k/v; exporting does the reverse. LLaMA names and layouts are
/// already ours. Errors are <see cref="InvalidDataException"/>s naming the file and what is wrong.
/// </summary>
public static class HfFormat
{
    const string ConfigFile = "config.json";
    const string WeightsFile = "model.safetensors";

    // GPT-2 Conv1D weights, stored (in, out) by HF.
    static readonly string[] Conv1DSuffixes = ["attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"];

    /// <summary>The entries of a model file that are its model's parameters (what `blr blocks` counts, as `blr
    /// inspect` does): when a config.json beside the file says which model it is, the buffers some exports store
    /// (GPT-2's causal masks, LLaMA's rotary inv_freq), a tied head's copy of the embedding and the zero biases a
    /// bias-free GPT-2 exports are left out; a file without a readable config.json keeps every entry.</summary>
    internal static IReadOnlyList<SafetensorsHeader.Entry> ParameterEntries(string file)
    {
        var entries = SafetensorsHeader.Read(file);
        var folder = Path.GetDirectoryName(Path.GetFullPath(file))!;
        if (!File.Exists(Path.Combine(folder, ConfigFile)))
            return entries;
        ModelConfig config;
        try
        {
            config = ReadConfig(folder);
        }
        catch (InvalidDataException)
        {
            return entries;
        }
        return entries.Where(e => IsParameter(e.Name, config)).ToList();
    }

    /// <summary>Whether a tensor stored under <paramref name="storedName"/> in a Hugging Face file is a parameter of
    /// the model <paramref name="c"/> (not a buffer, a tied copy or an exported zero bias).</summary>
    static bool IsParameter(string storedName, ModelConfig c) =>
        c.Architecture == Architecture.Gpt2
            ? !(
                storedName.EndsWith(".attn.bias", StringComparison.Ordinal)
                || storedName.EndsWith(".attn.masked_bias", StringComparison.Ordinal)
                || storedName == "lm_head.weight" && c.Tied
                || !c.Bias && storedName.EndsWith(".bias", StringComparison.Ordinal)
            )
            : !(
                storedName.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)
                || storedName == "lm_head.weight" && c.Tied
            );

    /// <summary>Reads config.json into a <see cref="ModelConfig"/>.</summary>
    public static ModelConfig ReadConfig(string directory)
    {
        var path = Path.Combine(directory, ConfigFile);
        if (!File.Exists(path))
            throw new InvalidDataException(
                $"{path}: not found (a Hugging Face model directory has config.json and model.safetensors)"
            );
        JsonObject json;
        try
        {
            json = JsonNode.Parse(File.ReadAllText(path))?.AsObject()
                ?? throw new InvalidDataException($"{path}: empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON (line {e.LineNumber + 1})");
        }
        var reader = new ConfigReader(path, json);
        var modelType = reader.String("model_type");
        ModelConfig config = modelType switch
        {
            "gpt2" => ReadGpt2(reader),
            "llama" => ReadLlama(reader),
            _ => throw new InvalidDataException($"{path}: model_type '{modelType}' is not supported (gpt2, llama)"),
        };
        var valid = ModelConfigRules.Validate(config);
        if (!valid.IsOk)
            throw new InvalidDataException($"{path}: {valid.Error}");
        return config;
    }

    static ModelConfig ReadGpt2(ConfigReader r)
    {
        var activation = r.OptionalString("activation_function") ?? "gelu_new";
        if (activation is not ("gelu_new" or "gelu_pytorch_tanh"))
            throw r.Error($"activation_function '{activation}' is not supported (GPT-2 here uses tanh GELU: gelu_new)");
        if (r.OptionalBool("scale_attn_by_inverse_layer_idx") == true || r.OptionalBool("scale_attn_weights") == false)
            throw r.Error("only the standard 1/sqrt(head_dim) attention scaling is supported");
        var width = r.Int("n_embd");
        var heads = r.Int("n_head");
        return new ModelConfig(
            Architecture.Gpt2,
            r.Int("n_layer"),
            width,
            heads,
            heads,
            r.OptionalInt("n_inner") ?? 4 * width,
            r.Int("n_positions"),
            r.Int("vocab_size"),
            bias: r.OptionalBool("blockwiselr_bias") ?? true,
            tied: r.OptionalBool("tie_word_embeddings") ?? true,
            normEps: r.OptionalDouble("layer_norm_epsilon") ?? 1e-5,
            ropeTheta: 10000.0
        );
    }

    static ModelConfig ReadLlama(ConfigReader r)
    {
        var activation = r.OptionalString("hidden_act") ?? "silu";
        if (activation != "silu")
            throw r.Error($"hidden_act '{activation}' is not supported (silu)");
        var width = r.Int("hidden_size");
        var heads = r.Int("num_attention_heads");
        if (r.OptionalInt("head_dim") is { } headDim && headDim * heads != width)
            throw r.Error(
                $"head_dim {headDim} x {heads} heads != hidden_size {width}; only head_dim = hidden_size / heads is "
                    + $"supported"
            );
        var attentionBias = r.OptionalBool("attention_bias") ?? false;
        var mlpBias = r.OptionalBool("mlp_bias") ?? false;
        if (attentionBias != mlpBias)
            throw r.Error("attention_bias and mlp_bias must agree");
        return new ModelConfig(
            Architecture.Llama,
            r.Int("num_hidden_layers"),
            width,
            heads,
            r.OptionalInt("num_key_value_heads") ?? heads,
            r.Int("intermediate_size"),
            r.Int("max_position_embeddings"),
            r.Int("vocab_size"),
            bias: attentionBias,
            tied: r.OptionalBool("tie_word_embeddings") ?? false,
            normEps: r.OptionalDouble("rms_norm_eps") ?? 1e-6,
            ropeTheta: RopeTheta(r)
        );
    }

    /// <summary>transformers 5 writes rope_parameters.rope_theta; older files a top-level rope_theta. Read
    /// both; never fall back to a default silently.</summary>
    static double RopeTheta(ConfigReader r)
    {
        double? nested = null;
        if (r.Json["rope_parameters"] is JsonObject parameters)
        {
            var type = parameters["rope_type"]?.GetValue<string>() ?? "default";
            if (type != "default")
                throw r.Error($"rope_parameters.rope_type '{type}' is not supported (default)");
            nested = parameters["rope_theta"]?.GetValue<double>();
        }
        var topLevel = r.OptionalDouble("rope_theta");
        return (nested, topLevel) switch
        {
            ({ } a, { } b) when a != b => throw r.Error($"rope_parameters.rope_theta {a} and rope_theta {b} disagree"),
            ({ } a, _) => a,
            (null, { } b) => b,
            _ => throw r.Error("no RoPE theta: neither rope_parameters.rope_theta nor rope_theta is set"),
        };
    }

    /// <summary>Loads a Hugging Face GPT-2 or LLaMA directory.</summary>
    public static LanguageModel Load(string directory, Device? device = null)
    {
        var config = ReadConfig(directory);
        var path = Path.Combine(directory, WeightsFile);
        if (!File.Exists(path))
            throw new InvalidDataException($"{path}: not found");
        var model = LanguageModel.Create(config, CPU);
        using (var scope = NewDisposeScope())
        {
            var stored = SafetensorsHeader.LoadTensors(path);
            var ours =
                config.Architecture == Architecture.Gpt2 ? FromHfGpt2(stored, config, path) : FromHfLlama(stored);
            CopyInto(model, ours, path);
        }
        if (device is not null)
            model.to(device);
        return model;
    }

    /// <summary>Writes config.json and model.safetensors (HF names and layouts) into <paramref name="directory"/>,
    /// each through a temporary file renamed into place, so a reader never sees half a file.</summary>
    public static void Save(LanguageModel model, string directory)
    {
        Directory.CreateDirectory(directory);
        using var scope = NewDisposeScope();
        var state = ToHfStateDict(model);
        var weights = Path.Combine(directory, WeightsFile);
        var weightsTemp = weights + $".tmp-{Environment.ProcessId}";
        Safetensors.SaveStateDict(weightsTemp, state);
        var config = Path.Combine(directory, ConfigFile);
        var configTemp = config + $".tmp-{Environment.ProcessId}";
        File.WriteAllText(
            configTemp,
            ConfigJson(model.Config).ToJsonString(new JsonSerializerOptions { WriteIndented = true })
        );
        File.Move(weightsTemp, weights, overwrite: true);
        File.Move(configTemp, config, overwrite: true);
    }

    /// <summary>The model's state dict as Hugging Face stores it (CPU fp32 tensors).</summary>
    public static Dictionary<string, Tensor> ToHfStateDict(LanguageModel model)
    {
        var c = model.Config;
        var ours = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().to(CPU).to(float32));
        if (c.Architecture != Architecture.Gpt2)
            return ours;

        var hf = new Dictionary<string, Tensor>();
        Tensor ZerosIfBiasFree(string name, long size) => ours.TryGetValue(name, out var b) ? b : zeros(size);
        foreach (var (name, tensor) in ours)
        {
            if (name.Contains(".attn.q_proj.") || name.Contains(".attn.k_proj.") || name.Contains(".attn.v_proj."))
                continue;
            hf[name] = Conv1DSuffixes.Any(name.EndsWith) ? tensor.t().contiguous() : tensor;
        }
        for (var i = 0; i < c.Layers; i++)
        {
            var h = $"transformer.h.{i}.";
            string[] qkv = ["q_proj", "k_proj", "v_proj"];
            hf[h + "attn.c_attn.weight"] = cat(qkv.Select(p => ours[$"{h}attn.{p}.weight"]).ToArray(), 0)
                .t()
                .contiguous(); // (d, 3d)
            hf[h + "attn.c_attn.bias"] = cat(
                qkv.Select(p => ZerosIfBiasFree($"{h}attn.{p}.bias", c.Width)).ToArray(),
                0
            );
            if (!c.Bias)
            {
                // HF GPT-2 always has biases: a bias-free model exports exact zeros (config says blockwiselr_bias:
                // false).
                hf[h + "attn.c_proj.bias"] = zeros(c.Width);
                hf[h + "mlp.c_fc.bias"] = zeros(c.FeedForward);
                hf[h + "mlp.c_proj.bias"] = zeros(c.Width);
                hf[h + "ln_1.bias"] = zeros(c.Width);
                hf[h + "ln_2.bias"] = zeros(c.Width);
            }
        }
        if (!c.Bias)
            hf["transformer.ln_f.bias"] = zeros(c.Width);
        return hf;
    }

    static Dictionary<string, Tensor> FromHfGpt2(Dictionary<string, Tensor> stored, ModelConfig c, string path)
    {
        var ours = new Dictionary<string, Tensor>();
        foreach (var (storedName, tensor) in stored)
        {
            // Files saved by older transformers omit the "transformer." prefix and carry causal-mask buffers.
            var name =
                storedName.StartsWith("transformer.") || storedName.StartsWith("lm_head.")
                    ? storedName
                    : "transformer." + storedName;
            if (name.EndsWith(".attn.bias") || name.EndsWith(".attn.masked_bias"))
                continue;
            if (name == "lm_head.weight" && c.Tied)
                continue; // the tied copy of wte
            if (name.EndsWith("attn.c_attn.weight") || name.EndsWith("attn.c_attn.bias"))
            {
                var prefix = name[..name.IndexOf("c_attn.", StringComparison.Ordinal)];
                var suffix = name.EndsWith(".weight") ? "weight" : "bias";
                var fused = suffix == "weight" ? tensor.t() : tensor; // (3d, d) or (3d)
                var parts = fused.chunk(3, 0);
                string[] names = ["q_proj", "k_proj", "v_proj"];
                for (var j = 0; j < 3; j++)
                    ours[$"{prefix}{names[j]}.{suffix}"] = parts[j];
                continue;
            }
            ours[name] = Conv1DSuffixes.Any(name.EndsWith) ? tensor.t() : tensor;
        }
        if (!c.Bias)
        {
            var nonZero = ours.Where(kv => kv.Key.EndsWith(".bias") && kv.Value.abs().max().item<float>() != 0)
                .Select(kv => kv.Key)
                .ToList();
            if (nonZero.Count > 0)
                throw new InvalidDataException(
                    $"{path}: config says blockwiselr_bias: false but {string.Join(", ", nonZero)} are not zero"
                );
            foreach (var key in ours.Keys.Where(k => k.EndsWith(".bias")).ToList())
                ours.Remove(key);
        }
        return ours;
    }

    static Dictionary<string, Tensor> FromHfLlama(Dictionary<string, Tensor> stored) =>
        stored.Where(kv => !kv.Key.EndsWith("rotary_emb.inv_freq")).ToDictionary(kv => kv.Key, kv => kv.Value);

    static void CopyInto(LanguageModel model, Dictionary<string, Tensor> state, string path)
    {
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var missing = parameters.Keys.Where(k => !state.ContainsKey(k)).ToList();
        var unexpected = state.Keys.Where(k => !parameters.ContainsKey(k)).ToList();
        if (missing.Count > 0 || unexpected.Count > 0)
            throw new InvalidDataException(
                $"{path}: tensors do not match the config's model; missing: [{string.Join(", ", missing)}], "
                    + $"unexpected: [{string.Join(", ", unexpected)}]"
            );
        var wrongShape = parameters
            .Where(p => !p.Value.shape.SequenceEqual(state[p.Key].shape))
            .Select(p =>
                $"{p.Key} is ({string.Join(", ", state[p.Key].shape)}), expected ({string.Join(", ", p.Value.shape)})"
            )
            .ToList();
        if (wrongShape.Count > 0)
            throw new InvalidDataException($"{path}: {string.Join("; ", wrongShape)}");
        foreach (var (name, parameter) in parameters)
            SafetensorsHeader.RequireDType(path, name, state[name], parameter.dtype);
        using var noGrad = no_grad();
        foreach (var (name, parameter) in parameters)
            parameter.copy_(state[name].to(float32));
    }

    static JsonObject ConfigJson(ModelConfig c) =>
        c.Architecture == Architecture.Gpt2
            ? new JsonObject
            {
                ["architectures"] = new JsonArray("GPT2LMHeadModel"),
                ["model_type"] = "gpt2",
                ["activation_function"] = "gelu_new",
                ["n_layer"] = c.Layers,
                ["n_embd"] = c.Width,
                ["n_head"] = c.Heads,
                ["n_inner"] = c.FeedForward,
                ["n_positions"] = c.Context,
                ["vocab_size"] = c.Vocab,
                ["layer_norm_epsilon"] = c.NormEps,
                ["tie_word_embeddings"] = c.Tied,
                ["attn_pdrop"] = 0.0,
                ["embd_pdrop"] = 0.0,
                ["resid_pdrop"] = 0.0,
                ["scale_attn_weights"] = true,
                ["initializer_range"] = 0.02,
                ["dtype"] = "float32",
                ["blockwiselr_bias"] = c.Bias,
            }
            : new JsonObject
            {
                ["architectures"] = new JsonArray("LlamaForCausalLM"),
                ["model_type"] = "llama",
                ["hidden_act"] = "silu",
                ["num_hidden_layers"] = c.Layers,
                ["hidden_size"] = c.Width,
                ["num_attention_heads"] = c.Heads,
                ["num_key_value_heads"] = c.KvHeads,
                ["head_dim"] = c.HeadDim,
                ["intermediate_size"] = c.FeedForward,
                ["max_position_embeddings"] = c.Context,
                ["vocab_size"] = c.Vocab,
                ["rms_norm_eps"] = c.NormEps,
                ["tie_word_embeddings"] = c.Tied,
                ["attention_bias"] = c.Bias,
                ["mlp_bias"] = c.Bias,
                ["rope_theta"] = c.RopeTheta,
                ["rope_parameters"] = new JsonObject { ["rope_theta"] = c.RopeTheta, ["rope_type"] = "default" },
                ["initializer_range"] = 0.02,
                ["dtype"] = "float32",
            };

    /// <summary>Typed reads of config.json with errors that name the file and the key.</summary>
    sealed class ConfigReader(string path, JsonObject json)
    {
        public JsonObject Json => json;

        public InvalidDataException Error(string message) => new($"{path}: {message}");

        JsonNode? Node(string key) => json.TryGetPropertyValue(key, out var node) ? node : null;

        T Read<T>(string key, JsonNode node)
        {
            try
            {
                return node.GetValue<T>();
            }
            catch (Exception e) when (e is FormatException or InvalidOperationException)
            {
                throw Error(
                    $"{key} is {node.ToJsonString()}, expected a {typeof(T).Name.ToLower(CultureInfo.InvariantCulture)}"
                );
            }
        }

        public int Int(string key) => OptionalInt(key) ?? throw Error($"missing {key}");

        public string String(string key) => OptionalString(key) ?? throw Error($"missing {key}");

        public int? OptionalInt(string key) => Node(key) is { } n ? Read<int>(key, n) : null;

        public double? OptionalDouble(string key) => Node(key) is { } n ? Read<double>(key, n) : null;

        public bool? OptionalBool(string key) => Node(key) is { } n ? Read<bool>(key, n) : null;

        public string? OptionalString(string key) => Node(key) is { } n ? Read<string>(key, n) : null;
    }
}
