using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using BlockwiseLR.Data;

namespace BlockwiseLR.Benchmarks;

/// <summary>`--prepare-scale DIR [GB]`: a corpus of more than 2^31 GPT-2 tokens generated from the built-in books
/// (paragraphs shuffled, one word in 40 given a random suffix so the vocabulary keeps growing and the word cache is
/// really exercised), written as 256 MiB text files, then `blr prepare` end to end at 1 and 2 threads in a child
/// process under /usr/bin/time: tokens/s, peak RSS, disk written. Needs about GB + 2 x GB/2 of free disk.</summary>
static class PrepareScale
{
    public static void Run(string folder, double gigabytes)
    {
        var corpus = Path.Combine(folder, "corpus");
        var bytes = Generate(corpus, (long)(gigabytes * (1L << 30)));
        Console.WriteLine($"corpus: {bytes:N0} bytes of text in {Directory.GetFiles(corpus).Length} files ({corpus})");
        foreach (var threads in new[] { 1, 2 })
        {
            var output = Path.Combine(folder, $"shards-{threads}");
            if (Directory.Exists(output))
                Directory.Delete(output, true);
            var info = new ProcessStartInfo(
                "/usr/bin/time",
                [
                    "-v",
                    "dotnet",
                    TrainerMeasurements.Blr(),
                    "prepare",
                    "--input",
                    corpus,
                    "--out",
                    output,
                    "--threads",
                    $"{threads}",
                ]
            )
            {
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            };
            var clock = Stopwatch.StartNew();
            using var process = Process.Start(info)!;
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEnd();
            process.WaitForExit();
            var seconds = clock.Elapsed.TotalSeconds;
            if (process.ExitCode != 0)
            {
                Console.WriteLine($"prepare --threads {threads} failed ({process.ExitCode}): {stderr}{stdout.Result}");
                return;
            }
            var rssKb = long.Parse(
                stderr.Split('\n').First(l => l.Contains("Maximum resident set size")).Split(':')[1].Trim()
            );
            var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "manifest.json")))!;
            var tokens = manifest["train_tokens"]!.GetValue<long>() + manifest["val_tokens"]!.GetValue<long>();
            var written = Directory.GetFiles(output).Sum(f => new FileInfo(f).Length);
            Console.WriteLine(
                $"prepare --threads {threads}: {tokens:N0} tokens ({tokens / (double)(1L << 31):F2} x 2^31) in {seconds:F1} s = {tokens / seconds / 1e6:F2}M tokens/s "
                    + $"(whole process, reading and hashing the inputs included); peak RSS {rssKb / 1024.0:F0} MiB; {written:N0} bytes written in "
                    + $"{Directory.GetFiles(output, "*.bin").Length} shards + manifest + chunk index"
            );
            Console.WriteLine("  " + stdout.Result.Trim().Replace("\n", "\n  "));
            if (threads == 1)
                Directory.Delete(output, true); // room for the next run
        }
    }

    /// <summary>Writes text files of 256 MiB until <paramref name="target"/> bytes, the same for the same
    /// target.</summary>
    static long Generate(string folder, long target)
    {
        if (Directory.Exists(folder) && Directory.GetFiles(folder).Sum(f => new FileInfo(f).Length) >= target)
            return Directory.GetFiles(folder).Sum(f => new FileInfo(f).Length);
        if (Directory.Exists(folder))
            Directory.Delete(folder, true);
        Directory.CreateDirectory(folder);
        var paragraphs = Corpus
            .Builtin("gutenberg")
            .Documents.SelectMany(d => d.Text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries))
            .ToArray();
        var random = new Random(20261201);
        const string letters = "abcdefghijklmnopqrstuvwxyz";
        long written = 0;
        for (var file = 0; written < target; file++)
        {
            using var stream = new FileStream(
                Path.Combine(folder, $"part_{file:D4}.txt"),
                FileMode.CreateNew,
                FileAccess.Write,
                FileShare.None,
                1 << 20
            );
            using var writer = new StreamWriter(stream, new UTF8Encoding(false), 1 << 20);
            var line = new StringBuilder();
            while (stream.Position < 256L << 20 && written + stream.Position < target)
            {
                line.Clear();
                foreach (var word in paragraphs[random.Next(paragraphs.Length)].Split(' '))
                {
                    if (line.Length > 0)
                        line.Append(' ');
                    line.Append(word);
                    if (random.Next(40) == 0) // a new word now and then: wordzqx
                        for (var k = random.Next(2, 5); k > 0; k--)
                            line.Append(letters[random.Next(26)]);
                }
                line.Append("\n\n");
                writer.Write(line);
                if (line.Length > 0 && random.Next(64) == 0)
                    writer.Flush();
            }
            writer.Flush();
            written += stream.Position;
        }
        return written;
    }
}
