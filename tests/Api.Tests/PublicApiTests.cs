using System.Reflection;
using System.Text.Json.Nodes;
using PublicApiGenerator;

namespace BlockwiseLR.Tests;

/// The surface a C# user compiles against: approved in a committed file, so every change shows in review, and
/// free of F# collection, option and function types all the way down.
public class PublicApiTests
{
    static readonly Assembly Library = typeof(BlockRatios).Assembly;

    static string Approved(string assembly) =>
        Path.Combine(TestPaths.RepositoryRoot(), "tests", "data", "approved", $"{assembly}.api.txt");

    [Theory]
    [InlineData("BlockwiseLR")]
    [InlineData("BlockwiseLR.Core")]
    public void The_public_api_is_the_approved_one(string assemblyName)
    {
        var assembly = assemblyName == "BlockwiseLR" ? Library : Assembly.Load(new AssemblyName(assemblyName));
        Assert.Equal(assemblyName, assembly.GetName().Name);
        var api = assembly
            .GeneratePublicApi(
                new ApiGeneratorOptions { ExcludeAttributes = ["System.Reflection.AssemblyMetadataAttribute"] }
            )
            .ReplaceLineEndings("\n");
        var path = Approved(assemblyName);
        var approved = File.Exists(path) ? File.ReadAllText(path).ReplaceLineEndings("\n") : "";
        if (api != approved)
        {
            File.WriteAllText(path + ".received", api);
            Assert.Fail($"the public API changed: review {path}.received and, if intended, move it over {path}");
        }
    }

    static readonly string[] ForbiddenGenerics =
    [
        "Microsoft.FSharp.Collections.FSharpList`1",
        "Microsoft.FSharp.Collections.FSharpMap`2",
        "Microsoft.FSharp.Core.FSharpOption`1",
        "Microsoft.FSharp.Core.FSharpValueOption`1",
        "Microsoft.FSharp.Core.FSharpFunc`2",
        "Microsoft.FSharp.Collections.FSharpSet`1",
        "Microsoft.FSharp.Core.FSharpResult`2",
    ];

    /// Every type a public member of BlockwiseLR leads to, recursively through the public members of types of this
    /// project (the F# core included), with the path that reached it.
    static Dictionary<Type, string> Reachable(IEnumerable<Type> roots)
    {
        var seen = new Dictionary<Type, string>();
        var queue = new Queue<(Type, string)>(roots.Select(t => (t, t.FullName!)));
        bool Ours(Type t) =>
            t.Assembly == Library
            || t.Assembly == typeof(PublicApiTests).Assembly
            || t.Assembly.GetName().Name == "BlockwiseLR.Core";
        while (queue.TryDequeue(out var item))
        {
            var (type, path) = item;
            if (type.IsGenericParameter || !seen.TryAdd(type, path))
                continue;
            foreach (var part in Parts(type))
                queue.Enqueue((part, $"{path} -> {part.Name}"));
            if (!Ours(type))
                continue;
            const BindingFlags flags =
                BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
            foreach (var member in type.GetMembers(flags))
            {
                IEnumerable<Type> used = member switch
                {
                    PropertyInfo p => [p.PropertyType, .. p.GetIndexParameters().Select(i => i.ParameterType)],
                    FieldInfo f => [f.FieldType],
                    MethodBase m =>
                    [
                        .. m.GetParameters().Select(p => p.ParameterType),
                        .. (m is MethodInfo mi ? [mi.ReturnType] : Array.Empty<Type>()),
                    ],
                    EventInfo e => [e.EventHandlerType!],
                    Type nested when nested.IsNestedPublic => [nested],
                    _ => [],
                };
                foreach (var t in used)
                    queue.Enqueue((t, $"{path}.{member.Name} -> {t.Name}"));
            }
            if (type.BaseType is { } baseType)
                queue.Enqueue((baseType, $"{path} : {baseType.Name}"));
            foreach (var i in type.GetInterfaces())
                queue.Enqueue((i, $"{path} : {i.Name}"));
        }
        return seen;
    }

    /// A type's element and generic argument types (List<AdamMiniPlan> leads to AdamMiniPlan).
    static IEnumerable<Type> Parts(Type type)
    {
        if (type.HasElementType)
            yield return type.GetElementType()!;
        if (type.IsGenericType)
        {
            yield return type.GetGenericTypeDefinition();
            foreach (var argument in type.GetGenericArguments())
                yield return argument;
        }
    }

    static readonly Assembly CoreAssembly = Assembly.Load(new AssemblyName("BlockwiseLR.Core"));

    [Fact]
    public void The_core_exports_only_the_types_the_library_api_uses_all_in_the_BlockwiseLR_namespace()
    {
        var exported = CoreAssembly.GetExportedTypes().Where(t => !t.IsNested).ToList();
        var used = Reachable(Library.GetExportedTypes()).Keys.Where(t => t.Assembly == CoreAssembly).ToHashSet();
        Assert.Contains(typeof(OptimizerKind), used); // the walk does reach into the core
        Assert.All(exported, t => Assert.Equal("BlockwiseLR", t.Namespace));
        Assert.All(exported, t => Assert.True(used.Contains(t), $"{t.FullName} is public but no library API uses it"));
        // What the issue found public: the taxonomy, the config module, the rules behind the facade.
        string[] internals =
        [
            "BlockwiseLR.Core.BlockKind",
            "BlockwiseLR.Core.Taxonomy",
            "BlockwiseLR.Core.ModelConfigModule",
            "BlockwiseLR.Core.OptimizerKindModule",
            "BlockwiseLR.Core.AdamMiniPartition",
            "BlockwiseLR.Core.MpiLaunch",
            "BlockwiseLR.Core.OptimizerKinds",
        ];
        Assert.All(internals, name => Assert.False(CoreAssembly.GetType(name, throwOnError: true)!.IsVisible, name));
    }

    [Fact]
    public void What_a_basic_run_names_is_in_the_BlockwiseLR_namespace_and_the_machinery_is_not_public()
    {
        // A basic run names the entry points, the options, the result, and the values it sets: every type of an
        // option group's property that a user writes by name (an enum, or a type with static values such as
        // BlockRatios.Paper or ComputeDevice.Cpu).
        Type[] entry =
        [
            typeof(Pretrainer),
            typeof(Trainer),
            typeof(PretrainOptions),
            typeof(PretrainResult),
            typeof(TrainingRun),
            typeof(StepReport),
            typeof(TrainProgress),
            typeof(ShardPreparer),
            typeof(PrepareOptions),
        ];
        var groups = typeof(PretrainOptions)
            .GetProperties()
            .Select(p => p.PropertyType)
            .Where(t => t.Assembly == Library)
            .ToList();
        Assert.True(groups.Count >= 8, $"only {groups.Count} option groups found");
        var named = groups
            .SelectMany(g => g.GetProperties())
            .Select(p => Nullable.GetUnderlyingType(p.PropertyType) ?? p.PropertyType)
            .Where(t =>
                (t.Assembly == Library || t.Assembly == CoreAssembly)
                && (
                    t.IsEnum || t.GetProperties(BindingFlags.Public | BindingFlags.Static).Any(p => p.PropertyType == t)
                )
            )
            .Distinct()
            .ToList();
        Assert.Contains(typeof(OptimizerKind), named);
        Assert.Contains(typeof(ComputeDevice), named);
        Assert.All(entry.Concat(groups).Concat(named), t => Assert.Equal("BlockwiseLR", t.Namespace));

        string[] machinery =
        [
            "BlockwiseLR.Training.ResolvedOptions",
            "BlockwiseLR.OptionNames",
            "BlockwiseLR.SafetensorsHeader",
            "BlockwiseLR.Optim.ReferenceAdamW",
            "BlockwiseLR.Optim.ReferenceAdamMini",
            "BlockwiseLR.Data.TextPieces",
        ];
        Assert.All(machinery, name => Assert.False(Library.GetType(name, throwOnError: true)!.IsVisible, name));
    }

    [Fact]
    public void No_public_signature_leads_to_an_fsharp_list_map_option_or_function()
    {
        var reachable = Reachable(Library.GetExportedTypes());
        Assert.True(reachable.Count > 100, $"only {reachable.Count} types reached: the walk is broken");
        Assert.Contains(reachable.Keys, t => t.FullName == "BlockwiseLR.AttentionShape"); // it does cross into the core
        var offending = Offending(reachable);
        Assert.True(offending.Count == 0, "F# types in the public API:\n" + string.Join("\n", offending.Take(20)));
    }

    static List<string> Offending(Dictionary<Type, string> reachable) =>
        reachable
            .Where(kv => kv.Key.IsGenericType && ForbiddenGenerics.Contains(kv.Key.GetGenericTypeDefinition().FullName))
            .Select(kv => kv.Value)
            .Order()
            .ToList();

    /// A public member that returns plans each holding an F# list, as AdamMini.Plans once returned the core's
    /// Adam-mini plans (now internal to the core).
    public sealed class LeakyExample
    {
        public IReadOnlyDictionary<string, LeakyPlan> Plans => new Dictionary<string, LeakyPlan>();
    }

    /// A plan with an F# list inside, as the core's AdamMiniPlan has.
    public sealed class LeakyPlan
    {
        public Microsoft.FSharp.Collections.FSharpList<int> Segments =>
            Microsoft.FSharp.Collections.FSharpList<int>.Empty;
    }

    [Fact]
    public void The_walk_finds_an_fsharp_list_two_levels_behind_a_public_member()
    {
        var offending = Offending(Reachable([typeof(LeakyExample)]));
        Assert.Contains(offending, path =>
            path.Contains("get_Plans") && path.Contains("LeakyPlan.get_Segments") && path.EndsWith("FSharpList`1")
        );
    }

    [Fact]
    public void The_library_package_depends_on_nothing_that_draws()
    {
        // The restore's resolved graph (what `dotnet list package --include-transitive` prints).
        var assets = JsonNode.Parse(
            File.ReadAllText(
                Path.Combine(TestPaths.RepositoryRoot(), "src", "Api.CSharp", "obj", "project.assets.json")
            )
        )!;
        var libraries = assets["libraries"]!.AsObject().Select(kv => kv.Key.Split('/')[0]).ToList();
        Assert.Contains("TorchSharp", libraries); // the oracle reads the real dependency graph
        string[] plotting = ["ScottPlot", "OxyPlot", "Plotly.NET", "LiveChartsCore", "XPlot", "Microcharts"];
        Assert.DoesNotContain(libraries, l => plotting.Any(d => l.StartsWith(d, StringComparison.OrdinalIgnoreCase)));
        // SkiaSharp is there only because TorchSharp itself depends on it (torchvision's image I/O), nothing of ours.
        var target = assets["targets"]!.AsObject().First().Value!.AsObject();
        var needSkia = target
            .Where(kv => kv.Value!["dependencies"]?.AsObject().Any(d => d.Key == "SkiaSharp") == true)
            .Select(kv => kv.Key.Split('/')[0]);
        Assert.All(needSkia, name => Assert.Equal("TorchSharp", name));
        Assert.DoesNotContain(Library.GetReferencedAssemblies(), a =>
            a.Name!.StartsWith("ScottPlot", StringComparison.Ordinal)
        );
    }
}
