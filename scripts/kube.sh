#!/usr/bin/env bash
# kube.sh up|down|status: a real single-node Kubernetes cluster for the
# Kubernetes runner's tests, on a fresh Debian machine of this kind, from
# the Go module proxy and Debian packages only (no registry, no internet).
#
#   up      builds the binaries if the cache lacks them (kube-build.sh;
#           ~6 min cold with 2 cores to itself, longer on busy cores,
#           seconds afterwards), starts etcd, the
#           API server, controller manager, scheduler, a containerd of its
#           own and the kubelet inside a network namespace of their own,
#           imports the scanner image, waits for the node to be Ready and
#           writes $STATE/env (KUBECONFIG, the image pinned by digest).
#   down    stops everything and removes the namespace, mounts and state.
#   status  says whether the cluster answers.
#   apiserver stop|start
#           kills the API server, or starts it again as up does (for
#           the tests of an API server restart mid-scan).
#
# Network: everything runs in the network namespace "nmap-mcp-kube". A veth
# pair joins it to the host (host 10.209.0.1, node 10.209.0.2) only so that
# the host can reach the API server on 10.209.0.2:6443; nftables in the
# namespace lets nothing out but replies, and drops all forwarding except
# between pods on the node's bridge (10.210.0.0/24). Pods can reach only
# pods and the node itself. Docker's containerd is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=${NMAP_MCP_KUBE_STATE:-/var/lib/nmap-mcp-kube}
CACHE=${NMAP_MCP_KUBE_CACHE:-$HOME/.cache/nmap-mcp-kube}
NETNS=nmap-mcp-kube
HOST_IF=nmk-host
NODE_IF=nmk-node
HOST_IP=10.209.0.1
NODE_IP=10.209.0.2
POD_CIDR=10.210.0.0/24
SVC_CIDR=10.211.0.0/24
SVC_IP=10.211.0.1
NODE_NAME=nmap-mcp-kube-node
PAUSE_IMAGE=nmap-mcp.local/pause:1
SOCK=$STATE/containerd/containerd.sock

log() { echo "kube.sh: $*" >&2; }
in_ns() { nsenter --net="/run/netns/$NETNS" "$@"; }

need_root() {
	if [ "$(id -u)" != 0 ]; then
		log "must run as root (it creates a network namespace and runs a kubelet)"
		exit 1
	fi
}

install_packages() {
	local need=()
	command -v openssl >/dev/null || need+=(openssl)
	command -v nft >/dev/null || need+=(nftables)
	command -v nsenter >/dev/null || need+=(util-linux)
	command -v ip >/dev/null || need+=(iproute2)
	command -v containerd >/dev/null || need+=(containerd)
	command -v runc >/dev/null || need+=(runc)
	command -v curl >/dev/null || need+=(curl)
	if [ ${#need[@]} -gt 0 ]; then
		log "installing ${need[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq >/dev/null
		apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	fi
	# The CNI plugins are unpacked, not installed: nothing system-wide.
	if [ ! -x "$CACHE/cni/usr/lib/cni/bridge" ]; then
		log "fetching Debian's containernetworking-plugins into $CACHE/cni"
		local d
		d=$(mktemp -d)
		(cd "$d" && apt-get download -qq containernetworking-plugins >/dev/null 2>&1 ||
			{ apt-get update -qq >/dev/null && apt-get download -qq containernetworking-plugins >/dev/null; })
		mkdir -p "$CACHE/cni"
		dpkg -x "$d"/containernetworking-plugins_*.deb "$CACHE/cni"
		rm -rf "$d"
	fi
}

pki() {
	local p=$STATE/pki
	mkdir -p "$p"
	cd "$p"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj /CN=nmap-mcp-kube-ca 2>/dev/null
	sign() { # name subject extensions
		openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
		printf '%b' "$3" >"$1.ext"
		openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 3650 -extfile "$1.ext" 2>/dev/null
	}
	sign apiserver /CN=kube-apiserver "subjectAltName=IP:$NODE_IP,IP:$SVC_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:localhost\nextendedKeyUsage=serverAuth\n"
	sign admin "/O=system:masters/CN=nmap-mcp-kube-admin" "extendedKeyUsage=clientAuth\n"
	openssl genrsa -out sa.key 2048 2>/dev/null
	openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
	cd - >/dev/null
	kubeconfig "$STATE/kubeconfig" "https://$NODE_IP:6443"
}

kubeconfig() { # file server
	cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: nmap-mcp-kube
  cluster:
    server: $2
    certificate-authority-data: $(base64 -w0 "$STATE/pki/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(base64 -w0 "$STATE/pki/admin.crt")
    client-key-data: $(base64 -w0 "$STATE/pki/admin.key")
contexts:
- name: nmap-mcp-kube
  context: {cluster: nmap-mcp-kube, user: admin}
current-context: nmap-mcp-kube
EOF
	chmod 600 "$1"
}

network() {
	ip netns add "$NETNS"
	ip link add "$HOST_IF" type veth peer name "$NODE_IF"
	ip link set "$NODE_IF" netns "$NETNS"
	ip addr add "$HOST_IP/30" dev "$HOST_IF"
	ip link set "$HOST_IF" up
	in_ns ip link set lo up
	in_ns ip addr add "$NODE_IP/30" dev "$NODE_IF"
	in_ns ip link set "$NODE_IF" up
	# Components want a default route to find the node's address; the
	# forward chain below keeps pods from using it.
	in_ns ip route add default via "$HOST_IP" dev "$NODE_IF"
	in_ns nft -f - <<EOF
table inet nmap_mcp_kube {
	chain input {
		type filter hook input priority 0; policy accept;
		iifname "$NODE_IF" tcp dport 6443 accept
		iifname "$NODE_IF" ct state established,related accept
		iifname "$NODE_IF" drop
	}
	chain forward {
		type filter hook forward priority 0; policy drop;
		iifname "cni0" oifname "cni0" accept
	}
	chain output {
		type filter hook output priority 0; policy accept;
		oifname "$NODE_IF" ct state established,related accept
		oifname "$NODE_IF" drop
	}
}
EOF
}

start() { # name command...
	local name=$1
	shift
	setsid nohup nsenter --net="/run/netns/$NETNS" "$@" >>"$STATE/log/$name.log" 2>&1 </dev/null &
	echo $! >"$STATE/pid/$name"
}

containerd_config() {
	mkdir -p "$STATE/cni/net.d" "$STATE/containerd"
	cat >"$STATE/cni/net.d/10-bridge.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "nmap-mcp-kube",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}],
              "dataDir": "$STATE/cni/ipam"}},
    {"type": "loopback"}
  ]
}
EOF
	cat >"$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CACHE/cni/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$STATE/runc"
        SystemdCgroup = false
EOF
}

kubelet_config() {
	mkdir -p "$STATE/kubelet/seccomp" "$STATE/pod-logs"
	cat >"$STATE/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
resolvConf: ""
containerRuntimeEndpoint: unix://$SOCK
address: $NODE_IP
readOnlyPort: 0
failSwapOn: false
podPidsLimit: 256
podLogsDirectory: $STATE/pod-logs
seccompDefault: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $STATE/pki/ca.crt}
authorization: {mode: AlwaysAllow}
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF
}

import_images() {
	local tag
	go build -trimpath -ldflags='-s -w' -o bin/nmap-mcp ./cmd/nmap-mcp
	tag=$(bin/nmap-mcp image build | sed -n 's/^tag: *//p')
	[ -n "$tag" ] || { log "could not learn the scanner image's tag"; exit 1; }
	# The pod sandbox ("pause") image: no registry, so it is built here on
	# the scanner image's layers (no extra download, nothing pulled).
	if ! docker image inspect "$PAUSE_IMAGE" >/dev/null 2>&1; then
		printf 'FROM %s\nENTRYPOINT ["/bin/sh", "-c", "trap \\"exit 0\\" TERM INT; while :; do sleep 3600 & wait $!; done"]\n' "$tag" |
			docker build -q -t "$PAUSE_IMAGE" - >/dev/null
	fi
	docker save "$tag" "$PAUSE_IMAGE" | ctr -a "$SOCK" -n k8s.io images import - >/dev/null
	local ref digest
	ref="docker.io/$tag"
	digest=$(ctr -a "$SOCK" -n k8s.io images ls "name==$ref" | awk 'NR==2 {print $3}')
	[ -n "$digest" ] || { log "image $ref not found in the cluster's containerd"; exit 1; }
	# Pods name the image by digest: give containerd that name too.
	ctr -a "$SOCK" -n k8s.io images tag --force "$ref" "docker.io/${tag%%:*}@$digest" >/dev/null
	echo "docker.io/${tag%%:*}@$digest"
}

wait_for() { # what seconds command...
	local what=$1 secs=$2
	shift 2
	for _ in $(seq 1 $((secs * 4))); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.25
	done
	log "$what did not come up within $secs s; logs in $STATE/log"
	tail -n 30 "$STATE"/log/*.log >&2 || true
	return 1
}

api() { # path
	curl -fsS --cacert "$STATE/pki/ca.crt" --cert "$STATE/pki/admin.crt" --key "$STATE/pki/admin.key" "https://$NODE_IP:6443$1"
}

node_ready() {
	local n
	n=$(api "/api/v1/nodes/$NODE_NAME" | tr -d ' \n') || return 1
	[[ $n == *'"type":"Ready","status":"True"'* ]]
}
default_sa() { api /api/v1/namespaces/default/serviceaccounts/default; }

start_apiserver() { # bin
	start kube-apiserver "$1/kube-apiserver" --etcd-servers http://127.0.0.1:2379 \
		--advertise-address "$NODE_IP" --bind-address "$NODE_IP" --secure-port 6443 \
		--tls-cert-file "$STATE/pki/apiserver.crt" --tls-private-key-file "$STATE/pki/apiserver.key" \
		--client-ca-file "$STATE/pki/ca.crt" \
		--kubelet-client-certificate "$STATE/pki/admin.crt" --kubelet-client-key "$STATE/pki/admin.key" \
		--service-account-key-file "$STATE/pki/sa.pub" --service-account-signing-key-file "$STATE/pki/sa.key" \
		--service-account-issuer https://kubernetes.default.svc \
		--service-cluster-ip-range "$SVC_CIDR" --authorization-mode Node,RBAC \
		--kubelet-preferred-address-types InternalIP \
		--allow-privileged=false --profiling=false -v 1
}

# apiserver stop|start: for the fault tests (issue 26), kill the running
# cluster's API server (SIGKILL, as a crash) or start it again the same way
# as up does and wait until it is ready.
apiserver() {
	need_root
	[ -f "$STATE/env" ] || { log "the cluster is not up"; exit 1; }
	case "${1:-}" in
	stop)
		local f=$STATE/pid/kube-apiserver pid
		[ -f "$f" ] || { log "the API server is not running"; return 0; }
		pid=$(cat "$f")
		kill -KILL "$pid" 2>/dev/null || true
		for _ in $(seq 1 40); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.25
		done
		rm -f "$f"
		;;
	start)
		[ ! -f "$STATE/pid/kube-apiserver" ] || { log "the API server runs already"; return 0; }
		start_apiserver "$(bash scripts/kube-build.sh)"
		wait_for "the API server" 90 api /readyz
		;;
	*)
		echo "usage: scripts/kube.sh apiserver stop|start" >&2
		exit 2
		;;
	esac
}

up() {
	need_root
	if [ -f "$STATE/env" ] && api /readyz >/dev/null 2>&1; then
		log "cluster already up"
		cat "$STATE/env"
		return 0
	fi
	down quiet
	local t0
	t0=$(date +%s)
	install_packages
	local bin
	bin=$(bash scripts/kube-build.sh)
	mkdir -p "$STATE/log" "$STATE/pid"
	pki
	network
	containerd_config
	kubelet_config
	start etcd "$bin/etcd" --name nmap-mcp-kube --data-dir "$STATE/etcd" \
		--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
		--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
		--initial-cluster nmap-mcp-kube=http://127.0.0.1:2380 --log-level warn
	start containerd containerd --config "$STATE/containerd/config.toml"
	start_apiserver "$bin"
	wait_for "the API server" 90 api /readyz
	kubeconfig "$STATE/kubeconfig" "https://$NODE_IP:6443"
	start kube-controller-manager "$bin/kube-controller-manager" --kubeconfig "$STATE/kubeconfig" \
		--leader-elect=false --service-account-private-key-file "$STATE/pki/sa.key" \
		--root-ca-file "$STATE/pki/ca.crt" --use-service-account-credentials=false \
		--bind-address 127.0.0.1 -v 1
	start kube-scheduler "$bin/kube-scheduler" --kubeconfig "$STATE/kubeconfig" --leader-elect=false \
		--bind-address 127.0.0.1 -v 1
	wait_for "containerd" 30 ctr -a "$SOCK" version
	local image
	image=$(import_images)
	# The project's seccomp profile, where Localhost profiles live
	# (kubernetes.seccomp_profile: nmap-mcp.json).
	bin/nmap-mcp image seccomp >"$STATE/kubelet/seccomp/nmap-mcp.json"
	start kubelet "$bin/kubelet" --config "$STATE/kubelet/config.yaml" --kubeconfig "$STATE/kubeconfig" \
		--hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --root-dir "$STATE/kubelet" \
		--cert-dir "$STATE/kubelet/pki" --seccomp-default=false -v 1
	wait_for "the node" 90 node_ready
	wait_for "the default ServiceAccount" 60 default_sa
	cat >"$STATE/env" <<EOF
NMAP_MCP_TEST_KUBECONFIG=$STATE/kubeconfig
NMAP_MCP_TEST_KUBE_IMAGE=$image
NMAP_MCP_TEST_KUBE_NODE=$NODE_NAME
NMAP_MCP_TEST_KUBE_SECCOMP=nmap-mcp.json
EOF
	log "cluster up in $(($(date +%s) - t0)) s (node $NODE_NAME, API https://$NODE_IP:6443)"
	cat "$STATE/env"
}

stop_pid() { # name
	local f=$STATE/pid/$1 pid
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 40); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.25
	done
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$f"
}

down() {
	need_root
	local quiet=${1:-}
	[ -d "$STATE" ] || [ -e "/run/netns/$NETNS" ] || { [ -n "$quiet" ] || log "nothing to take down"; return 0; }
	stop_pid kubelet
	if [ -S "$SOCK" ]; then
		# Stop every pod container before containerd goes.
		for t in $(ctr -a "$SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
			ctr -a "$SOCK" -n k8s.io tasks kill -s KILL "$t" >/dev/null 2>&1 || true
		done
		sleep 0.5
		for t in $(ctr -a "$SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
			ctr -a "$SOCK" -n k8s.io tasks rm -f "$t" >/dev/null 2>&1 || true
		done
	fi
	for c in kube-scheduler kube-controller-manager kube-apiserver containerd etcd; do
		stop_pid "$c"
	done
	# Shims of our containerd, if any outlived it.
	pkill -KILL -f "containerd-shim.*-address $SOCK" 2>/dev/null || true
	# Mounts under the state directory (rootfs, shm, volumes, netns pins),
	# deepest first.
	if [ -d "$STATE" ]; then
		grep -o " $STATE[^ ]*" /proc/mounts | sort -r | while read -r m; do
			umount -l "$m" 2>/dev/null || true
		done
	fi
	# The kubelet's cgroups.
	for d in /sys/fs/cgroup/*/kubepods; do
		[ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
	done
	ip link del "$HOST_IF" 2>/dev/null || true
	ip netns del "$NETNS" 2>/dev/null || true
	rm -rf "$STATE"
	[ -n "$quiet" ] || log "cluster down; nothing of it is left"
}

status() {
	if [ -f "$STATE/env" ] && api /readyz >/dev/null 2>&1; then
		echo "up"
		cat "$STATE/env"
	else
		echo "down"
		return 1
	fi
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
apiserver) apiserver "${2:-}" ;;
*)
	echo "usage: scripts/kube.sh up|down|status|apiserver stop|start" >&2
	exit 2
	;;
esac
