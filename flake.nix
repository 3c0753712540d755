{
  description = "ACP: a cluster platform for virtual machines (development shell)";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in {
      devShells = forAll (pkgs: {
        default = pkgs.mkShell {
          packages = [
            pkgs.nodejs_24
            pkgs.libvirt
            pkgs.qemu
            pkgs.iproute2
            pkgs.sqlite
            pkgs.chromium
          ];
          shellHook = ''
            export ACP_CHROMIUM=${pkgs.chromium}/bin/chromium
            export LD_LIBRARY_PATH=${pkgs.libvirt}/lib''${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
            echo "acp dev shell: node $(node --version); run 'npm install' then 'npm test'"
          '';
        };
      });
    };
}
