using System.Text.Json;
using System.Text.Json.Nodes;

namespace BlockwiseLR.Data;

/// <summary>
/// A Hugging Face <c>tokenizer.json</c> (BPE with byte fallback as Mistral and LLaMA ship it, or byte-level BPE as
/// GPT-2 and Qwen do) through Tokenizers.DotNet 1.4.1, a binding of Hugging Face's own Rust tokenizers: the reference
/// implementation these files are written for (Microsoft.ML.Tokenizers 2.0.1 cannot load them, dotnet/machinelearning
/// #7451 and #7197). Ids are checked against @huggingface/tokenizers, a separate JavaScript implementation. The
/// file's post-processor (a BOS it adds) is left out of the ids; documents are separated by the id that template adds
/// before a text (Mistral's &lt;s&gt;), else by &lt;|endoftext|&gt; or &lt;/s&gt;. Decoding skips special tokens (as
/// decode(skip_special_tokens=True)). One native instance per thread.
/// </summary>
public sealed class HfTextTokenizer : ITextTokenizer, IDisposable
{
    readonly ThreadLocal<Tokenizers.DotNet.Tokenizer> tokenizers;
    readonly int prefix;

    /// <summary>Loads the tokenizer.json at <paramref name="path"/>; a file that does not parse or has no document
    /// separator is a <see cref="DataInputException"/>.</summary>
    public HfTextTokenizer(string path)
    {
        Path = path;
        JsonNode root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(path)) ?? throw new JsonException("empty");
        }
        catch (JsonException e)
        {
            throw new DataInputException(
                $"{path}: not valid JSON ({e.Message.Split('\n')[0]}); give a Hugging Face tokenizer.json",
                "Tokenizer"
            );
        }
        if (root["model"]?["vocab"] is not JsonObject vocab)
            throw new DataInputException(
                $"{path}: not a Hugging Face tokenizer.json (no model.vocab object)",
                "Tokenizer"
            );
        var added = (root["added_tokens"] as JsonArray ?? [])
            .Select(t => (Id: t!["id"]!.GetValue<int>(), Content: t["content"]!.GetValue<string>()))
            .ToList();
        VocabSize =
            Math.Max(vocab.Max(kv => kv.Value!.GetValue<int>()), added.Select(t => t.Id).DefaultIfEmpty(-1).Max()) + 1;
        try
        {
            tokenizers = new ThreadLocal<Tokenizers.DotNet.Tokenizer>(
                () => new Tokenizers.DotNet.Tokenizer(path),
                trackAllValues: true
            );
            _ = tokenizers.Value;
        }
        catch (DllNotFoundException)
        {
            // The native library is the app's choice, as libtorch's is: the BlockwiseLR package does not pull it.
            throw new DataInputException(
                $"{path}: the native Hugging Face tokenizers library (hf_tokenizers) is not in this app; add the "
                    + "package Tokenizers.DotNet.runtime."
                    + $"{System.Runtime.InteropServices.RuntimeInformation.RuntimeIdentifier} "
                    + "1.4.1 (e.g. Tokenizers.DotNet.runtime.linux-x64) to it",
                "Tokenizer"
            );
        }
        catch (Tokenizers.DotNet.TokenizerException e)
        {
            throw new DataInputException(
                $"{path}: Hugging Face tokenizers could not load it ({e.Message.Split('\n')[0]})",
                "Tokenizer"
            );
        }
        var empty = tokenizers.Value!.Encode("");
        prefix = empty.Length;
        int? Added(string content) => added.Where(t => t.Content == content).Select(t => (int?)t.Id).FirstOrDefault();
        var separator = empty.Length == 1 ? (int)empty[0] : Added("<|endoftext|>") ?? Added("</s>");
        EndOfText = separator
            ?? throw new DataInputException(
                $"{path}: no document separator (its template adds no BOS, and it has no <|endoftext|> or </s>)",
                "Tokenizer"
            );
    }

    /// <summary>The tokenizer.json file this was loaded from.</summary>
    public string Path { get; }

    /// <inheritdoc/>
    public string Name => "tokenizer.json";

    /// <inheritdoc/>
    public int VocabSize { get; }

    /// <summary>The id written before each document.</summary>
    public int EndOfText { get; }

    /// <inheritdoc/>
    public IReadOnlyList<int> Encode(string text)
    {
        var ids = tokenizers.Value!.Encode(text);
        var result = new int[ids.Length - prefix];
        for (var i = 0; i < result.Length; i++)
            result[i] = (int)ids[i + prefix];
        return result;
    }

    /// <inheritdoc/>
    public string Decode(IEnumerable<int> ids) => tokenizers.Value!.Decode(ids.Select(i => (uint)i).ToArray());

    /// <summary>Frees the native tokenizers (one per thread that used this).</summary>
    public void Dispose()
    {
        foreach (var t in tokenizers.Values)
            t.Dispose();
        tokenizers.Dispose();
    }
}
