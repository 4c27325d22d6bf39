// BlockwiseLR from F#: pre-trains gpt2-tiny on the built-in Gutenberg corpus (tokenized with the built-in 4,000-piece
// tokenizer, as `blr demo` does), trains a small model of your own on tokens in memory, and reads the results. The
// README's F# snippets are copied from the regions below (ReadmeSnippetTests keeps them equal).
// Usage: dotnet run -- [steps] [output folder]
module FSharpQuickStart

// README: fsharp-basic-run begin
open System
open System.IO
open BlockwiseLR

let basicRun (steps: int) (output: string) =
    // Tokenize the built-in corpus (18 Project Gutenberg books) with the built-in 4,000-piece tokenizer; a second
    // run finds the same dataset there and reuses it.
    let data = Path.Combine(output, "data")

    PrepareOptions(Builtin = "gutenberg", Tokenizer = "gutenberg-bpe4k", OutputDirectory = data)
    |> ShardPreparer.Run
    |> ignore

    let options =
        PretrainOptions(
            Model = ModelOptions(Name = "gpt2-tiny", Overrides = ModelOverrides(Layers = 2)),
            Data = DataOptions(Path = data),
            Optimizer = OptimizerOptions(Kind = OptimizerKind.BlockwiseAdamW, Ratios = BlockRatios.Paper),
            Schedule = ScheduleOptions(Kind = LrSchedule.Cosine, Lr = 1e-3),
            Training = TrainingOptions(Steps = steps, BatchSize = 4, SeqLen = 64),
            Evaluation = EvaluationOptions(Every = max 1 (steps / 2), Windows = 8),
            Run = RunOptions(Out = Path.Combine(output, "run"), Overwrite = true)
        )

    Pretrainer.Run(options)
// README: fsharp-basic-run end

// README: fsharp-own-model begin
open TorchSharp
open type TorchSharp.torch.nn
open BlockwiseLR.Data // InMemoryTokens: tokens of your own

/// Embedding -> residual MLP -> causal running mean -> gain -> readout: (B, T) ids -> (B, T, vocab) logits.
type TinyMixer(vocab: int64, width: int64) as this =
    inherit Module<torch.Tensor, torch.Tensor>("TinyMixer")
    let lookup = Embedding(vocab, width)
    let mixer = Linear(width, width)
    let gain = LayerNorm(width)
    let readout = Linear(width, vocab, hasBias = false)
    do this.RegisterComponents()

    override _.forward tokens =
        let x = lookup.forward tokens
        let x = x + functional.gelu (mixer.forward x)

        let counts =
            torch.arange(1L, tokens.shape[1] + 1L, dtype = torch.float32).view(1L, -1L, 1L)

        readout.forward (gain.forward (x.cumsum (1L) / counts + x))

/// A stream that counts up modulo the vocabulary, now and then skipping one.
let counting (vocab: int) (length: int) (seed: int) =
    let random = Random seed
    let tokens = Array.zeroCreate length

    for i in 1 .. length - 1 do
        tokens[i] <- (tokens[i - 1] + 1 + (if random.Next 4 = 0 then 1 else 0)) % vocab

    tokens

let ownModel (steps: int) =
    use model = new TinyMixer(16L, 32L)
    // None of TinyMixer's parameter names is one BlockwiseLR knows: say which block each one is.
    let rules =
        BlockRules.Default
            .With("lookup.weight", Block.Embedding)
            .With("mixer.*", Block.FeedForward)
            .With("gain.*", Block.Norm)
            .With("readout.weight", Block.OutputHead)

    let options =
        PretrainOptions(
            Optimizer = OptimizerOptions(Kind = OptimizerKind.BlockwiseAdamW, Ratios = BlockRatios.Paper),
            Schedule = ScheduleOptions(Lr = 3e-3),
            Training = TrainingOptions(Steps = steps, BatchSize = 8, SeqLen = 12),
            Evaluation = EvaluationOptions(Every = 10, Windows = 4),
            Run = RunOptions(Out = Path.Combine(Path.GetTempPath(), "blockwiselr-fsharp-own-model"), Overwrite = true)
        )

    Trainer(options)
        .WithModel(model, rules)
        .WithData(InMemoryTokens("train", counting 16 4000 1), InMemoryTokens("val", counting 16 400 2))
        .OnStep(fun report ->
            if report.ValLoss.HasValue then
                printfn
                    "own model step %3d: loss %.4f, val %.4f, lr emb %.2e"
                    report.Step
                    report.Loss
                    report.ValLoss.Value
                    report.LearningRates[Block.Embedding])
        .Run()
// README: fsharp-own-model end

[<EntryPoint>]
let main args =
    let steps = if args.Length > 0 then int args[0] else 50

    let output =
        if args.Length > 1 then
            args[1]
        else
            Path.Combine(Path.GetTempPath(), "blockwiselr-fsharp-sample")

    TorchRuntime.EnsureAvailable()
    // README: fsharp-reading-results begin
    let result = basicRun steps output
    // A value the run did not measure is null: the val losses of a run with no evaluation (one cancelled before its
    // first), the speed of one that timed no step.
    let shown (format: float -> string) (value: Nullable<float>) =
        if value.HasValue then format value.Value else "none"

    printfn
        "final val loss %s (best %s), %s tokens/s"
        (shown (sprintf "%.4f") result.FinalValLoss)
        (shown (sprintf "%.4f") result.BestValLoss)
        (shown (sprintf "%.0f") result.TokensPerSecond)

    for eval in result.Evals do
        printfn "  eval after %d steps: %.4f" eval.Step eval.ValLoss

    // Every step as a typed record, numbered by steps done (1 to Steps, as evaluations and checkpoints are).
    let last = result.History[result.History.Count - 1]
    printfn "step %d: loss %.4f, qk LR %.2e" last.Step last.Loss last.LearningRates[Block.AttentionQK]

    // The same, read back from the run folder later without the model: history, evaluations, result, checkpoints.
    let run = TrainingRun.Open(result.RunDirectory)

    printfn
        "read back: %d steps, final val loss %s, latest checkpoint after %d steps"
        run.History.Count
        (shown (sprintf "%.4f") run.Result.FinalValLoss)
        run.LatestState.Step
    // README: fsharp-reading-results end
    let own = ownModel 30
    printfn "own model: final val loss %s" (shown (sprintf "%.4f") own.FinalValLoss)
    0
