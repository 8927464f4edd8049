namespace ColoChardev.Testbed;

/// <summary>Finds qemu-system-x86_64. Tests that need it fail loudly when it is missing (CI installs it).</summary>
public static class QemuBinary
{
    /// <summary>The QEMU binary: <c>$QEMU_SYSTEM_X86_64</c>, else <c>qemu-system-x86_64</c> on PATH.</summary>
    /// <exception cref="FileNotFoundException">QEMU is not installed.</exception>
    public static string Path
    {
        get
        {
            string? configured = Environment.GetEnvironmentVariable("QEMU_SYSTEM_X86_64");
            if (!string.IsNullOrEmpty(configured))
            {
                return File.Exists(configured)
                    ? configured
                    : throw new FileNotFoundException($"QEMU_SYSTEM_X86_64={configured} does not exist");
            }

            foreach (string directory in (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(':', StringSplitOptions.RemoveEmptyEntries))
            {
                string candidate = System.IO.Path.Combine(directory, "qemu-system-x86_64");
                if (File.Exists(candidate))
                {
                    return candidate;
                }
            }

            throw new FileNotFoundException(
                "qemu-system-x86_64 is not installed: run 'apt-get install -y --no-install-recommends qemu-system-x86' (.ci/run does this)");
        }
    }
}
