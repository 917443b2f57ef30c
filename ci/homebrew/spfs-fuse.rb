# Homebrew formula for spfs-fuse. Builds from source with cargo; needs no FUSE to build, and
# works with either macFUSE or FUSE-T at run time (`spfs-fuse doctor` says which is usable).
class SpfsFuse < Formula
  desc "Per-process-tree /spfs views on macOS, served by one FUSE mount (macFUSE or FUSE-T)"
  homepage "https://github.com/spfs-fuse/spfs-fuse"
  # Placeholder until the first release: set the tag and its tarball's sha256.
  url "https://github.com/spfs-fuse/spfs-fuse/archive/refs/tags/v0.1.0.tar.gz"
  sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  license "Apache-2.0"
  head "https://github.com/spfs-fuse/spfs-fuse.git", branch: "main"

  depends_on "rust" => :build
  depends_on :macos

  def install
    system "cargo", "install", *std_cargo_args(path: "cli")
  end

  def post_install
    # The service's per-runtime volumes go here, not under /Volumes, which only root may write
    # (mode 1755): a per-user service could not create its first volume there.
    (var/"spfs-fuse/volumes").mkpath
    # Never fail the install: right after `brew install` there may be no FUSE backend yet,
    # and doctor exits non-zero to say so.
    quiet_system bin/"spfs-fuse", "sweep"
    report = Utils.popen_read(bin/"spfs-fuse", "doctor")
    ohai "spfs-fuse doctor"
    puts report
  rescue => e
    opoo "spfs-fuse doctor could not run: #{e.message}"
  end

  service do
    run [opt_bin/"spfs-fuse", "service", "--backend", "auto",
         "--volumes-dir", var/"spfs-fuse/volumes"]
    # launchd restarts the service only when it crashes: it dies by a signal launchd counts as a
    # crash (SIGSEGV, SIGBUS, SIGILL, ...; SIGABRT too, and a release build aborts on a Rust
    # panic, `panic = "abort"` in the workspace's release profile). A service that cannot start
    # (no usable backend, the mount point taken) exits 1 with its hint in the log and stays
    # stopped instead of restarting in a loop; `spfs-fuse shutdown` exits 0 and stays stopped
    # too. `keep_alive true` would restart it after each of those exits. A restarted service
    # registers again the runtimes whose root processes still run.
    keep_alive crashed: true
    log_path var/"log/spfs-fuse.log"
    error_log_path var/"log/spfs-fuse.log"
  end

  def caveats
    <<~EOS
      spfs-fuse needs one FUSE backend. Pick one:

        macFUSE (kernel extension; one shared mount at /spfs, routed by process tree):
          brew install --cask macfuse
        then approve the extension: on Apple Silicon, boot to Recovery and choose Reduced
        Security, then Allow it in System Settings > Privacy & Security, and reboot.

        FUSE-T (no kernel extension; a volume per runtime, or with `--layout single` one
        runtime at a time at /spfs):
          brew install --cask macos-fuse-t/cask/fuse-t

      Check the install and see what is missing:
        spfs-fuse doctor

      The service runs in one of two ways; start one, not both.

      A system service (a LaunchDaemon run by root) serves every user at /spfs, on the socket
      /var/run/spfs-fuse/spfs-fuse.sock, which every user's spfs-fuse finds by itself:
        sudo brew services start spfs-fuse
      The root volume is read-only, so /spfs needs this line in /etc/synthetic.conf (then
      reboot):
          spfs
        e.g.  printf 'spfs\n' | sudo tee -a /etc/synthetic.conf

      A per-user service (a LaunchAgent run by you, at login) mounts only where you may:
        brew services start spfs-fuse
      macOS lets a user mount only on a directory that user owns, so make /spfs a symlink
      (a synthetic.conf entry with a target, separated by a tab) to a directory of yours, then
      reboot:
          mkdir -p ~/.spfs
          printf 'spfs\t%s\n' "${HOME#/}/.spfs" | sudo tee -a /etc/synthetic.conf
      Its per-runtime volumes go to #{var}/spfs-fuse/volumes, which you can write, not
      /Volumes, which only root may.

      Either service is restarted by launchd after a crash, and registers again the runtimes
      whose processes still run; one that cannot start (no usable backend) exits with the
      reason and a hint in #{var}/log/spfs-fuse.log and stays stopped until you fix it and
      start it again. It runs `spfs-fuse service --backend auto`, which picks macFUSE when it
      is usable, else FUSE-T. Then:
        spfs-fuse run ENV_SPEC -- CMD
    EOS
  end

  test do
    # doctor exits 0 (ready), 2 (ready with warnings) or 1 (not ready, e.g. no FUSE on the
    # test host); whatever it finds, --json must print a valid report.
    report = JSON.parse(shell_output("#{bin}/spfs-fuse doctor --json", nil))
    refute_empty report
    assert_match "spfs-fuse", shell_output("#{bin}/spfs-fuse --version")
  end
end
