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
    run [opt_bin/"spfs-fuse", "service", "--backend", "auto"]
    keep_alive true
    log_path var/"log/spfs-fuse.log"
    error_log_path var/"log/spfs-fuse.log"
  end

  def caveats
    <<~EOS
      spfs-fuse needs one FUSE backend. Pick one:

        FUSE-T (no kernel extension; a volume per runtime under /Volumes/spfs-<pid>):
          brew install --cask macos-fuse-t/cask/fuse-t

        macFUSE (kernel extension; one shared mount at /spfs):
          brew install --cask macfuse
        then approve the extension: on Apple Silicon, boot to Recovery and choose Reduced
        Security, then Allow it in System Settings > Privacy & Security, and reboot.
        The root volume is read-only, so /spfs needs this line in /etc/synthetic.conf
        (then reboot):
          spfs
        e.g.  printf 'spfs\\n' | sudo tee -a /etc/synthetic.conf

      Check the install and see what is missing:
        spfs-fuse doctor

      Start the service now and at login:
        brew services start spfs-fuse
      (it runs `spfs-fuse service --backend auto`, which picks macFUSE when it is usable,
      else FUSE-T). Then:
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
