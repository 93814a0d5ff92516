// Command harness starts a local Kubernetes control plane, etcd and kube-apiserver on loopback
// ports in a temporary directory, for the tests and the demo, and stops it cleanly: the API
// server first (it hangs on a dead etcd), then etcd, then the directory is removed.
//
// It prints one JSON line on standard output once the API server is ready (and the CRDs given
// with --crds are established), then runs until SIGINT or SIGTERM, or, with --watch-stdin,
// until its standard input closes: a test process holds the write end, so the control plane
// stops when the tests end, however they end. Should the harness itself be killed, the kernel
// kills both servers (PR_SET_PDEATHSIG).
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// info is the line printed once the control plane is ready.
type info struct {
	Kubeconfig string `json:"kubeconfig"`
	Server     string `json:"server"`
	Etcd       string `json:"etcd"`
	AuditLog   string `json:"auditLog"`
	Dir        string `json:"dir"`
	Version    string `json:"version"`
	Pid        int    `json:"pid"`
}

func main() {
	// Pdeathsig is tied to the thread that started the child: the servers are started from
	// the main goroutine, locked to its thread for the life of the process.
	runtime.LockOSThread()
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "control plane: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	var crds, apiserverArgs listFlag
	bin := flag.String("bin", "", "directory holding kube-apiserver, etcd and kubectl")
	dir := flag.String("dir", "", "working directory (default: a new temporary directory, removed at exit)")
	keep := flag.Bool("keep", false, "keep the working directory at exit")
	watchStdin := flag.Bool("watch-stdin", false, "stop when standard input closes")
	infoFile := flag.String("info-file", "", "also write the ready line to this file")
	timeout := flag.Duration("timeout", 120*time.Second, "how long the control plane may take to be ready")
	flag.Var(&crds, "crds", "a file or directory of CustomResourceDefinitions to apply once ready (repeatable)")
	flag.Var(&apiserverArgs, "apiserver-arg", "an extra kube-apiserver flag, e.g. --watch-cache=false (repeatable)")
	flag.Parse()
	if *bin == "" {
		return errors.New("--bin is required")
	}
	for _, name := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(*bin, name)); err != nil {
			return fmt.Errorf("--bin %s: %w", *bin, err)
		}
	}

	workDir := *dir
	if workDir == "" {
		made, err := os.MkdirTemp("", "aws-access-operator-controlplane-")
		if err != nil {
			return err
		}
		workDir = made
		if !*keep {
			defer os.RemoveAll(workDir)
		}
	} else if err := os.MkdirAll(workDir, 0o700); err != nil {
		return err
	}

	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)

	// The ports are picked free and handed to the servers, and another process may take one
	// in between: a server that exits while starting is started again on fresh ports.
	var plane *controlPlane
	var err error
	for attempt := 1; ; attempt++ {
		plane, err = start(*bin, workDir, apiserverArgs, *timeout)
		var died *startExit
		if err == nil || !errors.As(err, &died) || attempt == 3 {
			break
		}
		fmt.Fprintf(os.Stderr, "control plane: %v; starting again\n", err)
		plane.stop()
		if err := os.RemoveAll(filepath.Join(workDir, "etcd")); err != nil {
			return err
		}
	}
	if plane != nil {
		defer plane.stop()
	}
	if err != nil {
		return err
	}
	for _, path := range crds {
		if err := plane.applyCRDs(*bin, path); err != nil {
			return err
		}
	}
	line, err := json.Marshal(plane.info)
	if err != nil {
		return err
	}
	if *infoFile != "" {
		if err := os.WriteFile(*infoFile, append(line, '\n'), 0o600); err != nil {
			return err
		}
	}
	fmt.Println(string(line))

	stdinClosed := make(chan struct{})
	if *watchStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			close(stdinClosed)
		}()
	}
	select {
	case sig := <-signals:
		fmt.Fprintf(os.Stderr, "control plane: %v, stopping\n", sig)
	case <-stdinClosed:
	case exited := <-plane.exits:
		return fmt.Errorf("%s exited unexpectedly: %v; its log:\n%s", exited.name, exited.err, tail(exited.log))
	}
	return nil
}

type exit struct {
	name, log string
	err       error
}

// startExit is a server that exited while the control plane was starting.
type startExit struct{ exit }

func (e *startExit) Error() string {
	return fmt.Sprintf("%s exited while starting: %v; its log:\n%s", e.name, e.err, tail(e.log))
}

type server struct {
	name, log string
	cmd       *exec.Cmd
	done      chan struct{}
}

type controlPlane struct {
	info    info
	servers []*server
	exits   chan exit
}

func freePort() (int, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer listener.Close()
	return listener.Addr().(*net.TCPAddr).Port, nil
}

func (c *controlPlane) launch(name, program, dir string, args []string) error {
	log := filepath.Join(dir, name+".log")
	out, err := os.Create(log)
	if err != nil {
		return err
	}
	cmd := exec.Command(program, args...)
	cmd.Stdout, cmd.Stderr = out, out
	// A process group of its own, so that a Ctrl-C in a terminal reaches only the harness,
	// which stops the servers in order; and killed if the harness dies without stopping them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	s := &server{name: name, log: log, cmd: cmd, done: make(chan struct{})}
	c.servers = append(c.servers, s)
	go func() {
		err := cmd.Wait()
		out.Close()
		close(s.done)
		select {
		case c.exits <- exit{name: name, log: log, err: err}:
		default:
		}
	}()
	return nil
}

// stop ends the servers in the reverse order of their start: the API server before etcd.
func (c *controlPlane) stop() {
	for i := len(c.servers) - 1; i >= 0; i-- {
		s := c.servers[i]
		select {
		case <-s.done:
			continue
		default:
		}
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			fmt.Fprintf(os.Stderr, "control plane: %s did not stop within 15s of SIGTERM; killing it\n", s.name)
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
}

func auditPolicy() string {
	// Metadata of every request (who, what, where, the decision and the RBAC rule's binding),
	// written once each request completes.
	return `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
`
}

func start(bin, dir string, extraArgs []string, timeout time.Duration) (*controlPlane, error) {
	c := &controlPlane{exits: make(chan exit, 4)}
	certs, err := makePKI(dir)
	if err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	etcdPort, err := freePort()
	if err != nil {
		return nil, err
	}
	peerPort, err := freePort()
	if err != nil {
		return nil, err
	}
	apiPort, err := freePort()
	if err != nil {
		return nil, err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	if err := c.launch("etcd", filepath.Join(bin, "etcd"), dir, []string{
		"--name=default",
		"--data-dir=" + filepath.Join(dir, "etcd"),
		"--listen-client-urls=" + etcdURL,
		"--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=default=" + peerURL,
		// A test's data lives for one run: durability is not worth a disk flush per write.
		"--unsafe-no-fsync",
		"--log-level=warn",
	}); err != nil {
		return c, err
	}

	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy()), 0o600); err != nil {
		return c, err
	}
	auditLog := filepath.Join(dir, "audit.log")
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--cert-dir=" + filepath.Join(dir, "apiserver-certs"),
		"--tls-cert-file=" + certs.serverCert,
		"--tls-private-key-file=" + certs.serverKey,
		"--client-ca-file=" + certs.caCert,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + certs.saPub,
		"--service-account-signing-key-file=" + certs.saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		// No kubelets, nodes or controllers here: nothing reconciles endpoints, and the
		// flow-control queues would only slow a test's bursts.
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--audit-policy-file=" + policy,
		"--audit-log-path=" + auditLog,
		"--audit-log-maxsize=0",
		"--profiling=false",
	}
	args = append(args, extraArgs...)
	if err := c.launch("kube-apiserver", filepath.Join(bin, "kube-apiserver"), dir, args); err != nil {
		return c, err
	}

	server := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, server, certs); err != nil {
		return c, err
	}
	version, err := waitReady(server, certs, timeout, c.exits)
	if err != nil {
		return c, err
	}
	c.info = info{
		Kubeconfig: kubeconfig,
		Server:     server,
		Etcd:       etcdURL,
		AuditLog:   auditLog,
		Dir:        dir,
		Version:    version,
		Pid:        os.Getpid(),
	}
	return c, nil
}

func writeKubeconfig(path, server string, certs *pki) error {
	read := func(p string) (string, error) {
		data, err := os.ReadFile(p)
		return base64.StdEncoding.EncodeToString(data), err
	}
	ca, err := read(certs.caCert)
	if err != nil {
		return err
	}
	cert, err := read(certs.adminCert)
	if err != nil {
		return err
	}
	key, err := read(certs.adminKey)
	if err != nil {
		return err
	}
	text := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: local
  context:
    cluster: local
    user: admin
current-context: local
`, server, ca, cert, key)
	return os.WriteFile(path, []byte(text), 0o600)
}

func adminClient(certs *pki) (*http.Client, error) {
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(certs.caCert)
	if err != nil {
		return nil, err
	}
	pool.AppendCertsFromPEM(ca)
	pair, err := tls.LoadX509KeyPair(certs.adminCert, certs.adminKey)
	if err != nil {
		return nil, err
	}
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs:      pool,
			Certificates: []tls.Certificate{pair},
		}},
	}, nil
}

// waitReady polls /readyz (every post-start hook, RBAC's bootstrap roles included) and returns
// the server's version.
func waitReady(server string, certs *pki, timeout time.Duration, exits chan exit) (string, error) {
	client, err := adminClient(certs)
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		select {
		case exited := <-exits:
			return "", &startExit{exited}
		default:
		}
		response, err := client.Get(server + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(response.Body)
			response.Body.Close()
			if response.StatusCode == http.StatusOK {
				return serverVersion(client, server)
			}
			last = fmt.Sprintf("%d %s", response.StatusCode, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return "", fmt.Errorf("kube-apiserver was not ready within %v (last answer: %s)", timeout, last)
}

func serverVersion(client *http.Client, server string) (string, error) {
	response, err := client.Get(server + "/version")
	if err != nil {
		return "", err
	}
	defer response.Body.Close()
	var version struct {
		GitVersion string `json:"gitVersion"`
	}
	if err := json.NewDecoder(response.Body).Decode(&version); err != nil {
		return "", fmt.Errorf("/version: %w", err)
	}
	return version.GitVersion, nil
}

// applyCRDs applies the definitions with kubectl and waits until every one is established.
func (c *controlPlane) applyCRDs(bin, path string) error {
	kubectl := filepath.Join(bin, "kubectl")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runKubectl := func(args ...string) error {
		cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", c.info.Kubeconfig}, args...)...)
		output, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, output)
		}
		return nil
	}
	if err := runKubectl("apply", "--server-side", "--field-manager=control-plane-harness", "-f", path); err != nil {
		return err
	}
	return runKubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", path)
}

// tail is the end of a log, for an error message.
func tail(path string) string {
	file, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer file.Close()
	var lines []string
	scanner := bufio.NewScanner(file)
	scanner.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for scanner.Scan() {
		lines = append(lines, scanner.Text())
		if len(lines) > 40 {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
