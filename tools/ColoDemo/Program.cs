namespace ColoChardev.Demo;

/// <summary>
/// The README's demo. <c>colo-demo</c> (or <c>colo-demo all</c>): the COLO pair with the daemon, then the standalone
/// side-by-side with QEMU's colo-compare. <c>colo-demo pair</c> or <c>colo-demo standalone</c> runs one part;
/// <c>colo-demo measure</c> prints the side-by-side figures of a COLO pair (scripts/qemu/measure-pair.sh).
/// </summary>
public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        string part = args.Length > 0 ? args[0] : "all";
        switch (part)
        {
            case "pair":
                return await PairDemo.RunAsync();
            case "standalone":
                return await StandaloneDemo.RunAsync();
            case "measure":
                return await PairMeasurement.RunAsync(args[1..]);
            case "soak":
                return await Soak.RunAsync(args[1..]);
            case "soak-plot" when args.Length == 3:
                return Soak.Replot(args[1], args[2]);
            case "all":
                int pair = await PairDemo.RunAsync();
                Console.WriteLine();
                int standalone = await StandaloneDemo.RunAsync();
                return pair != 0 ? pair : standalone;
            default:
                await Console.Error.WriteLineAsync("usage: colo-demo [all|pair|standalone] | colo-demo measure [--rounds N] [--idle-seconds S] [--load-seconds S] [--echoes N] | colo-demo soak [--minutes M] [--restart-every S] [--diverge-every S] [--drop-every S] [--out DIR]");
                return 2;
        }
    }
}
