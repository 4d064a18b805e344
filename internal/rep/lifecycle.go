package rep

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"github.com/minicf/minicf/internal/bbs"
)

// The lifecycle mapping. A Diego cell gets the buildpack lifecycle's
// builder and launcher from a blobstore and runs them in the container at
// /tmp/lifecycle. A minicf cell has them as verbs of its own binary: an
// action (a Task's or an LRP's) whose path is bbs.LifecycleBuilder or
// bbs.LifecycleLauncher runs [Config.LifecycleBinary, "builder" or
// "launcher", args...] in the container instead.
//
// The container has no root filesystem of its own (its processes see the
// host's), so the paths a lifecycle binary gets are rewritten: an argument
// that is a container path, /home/vcap/app (or the setup's destination),
// /home/vcap or /tmp, or under one of them, becomes the container's
// directory for it: <dir>/app, <dir> and <dir>/tmp. So is the value of a
// "--flag=/tmp/..." argument. Only lifecycle binaries get this: any other
// action gets its arguments as they are. The one argument never rewritten
// is the builder's --command value: it is the start command the droplet
// records, run later by the launcher in another container.

// lifecycleVerbs maps a lifecycle path to the minicf verb that runs it.
var lifecycleVerbs = map[string]string{
	bbs.LifecycleBuilder:  "builder",
	bbs.LifecycleLauncher: "launcher",
}

// actionCommand is the command (path and arguments) an action runs in the
// container whose directory is dir.
func (r *Rep) actionCommand(dir string, a *bbs.RunAction, setupTo string) (string, []string, error) {
	if strings.HasPrefix(a.Path, bbs.LifecyclePrefix) {
		verb, ok := lifecycleVerbs[path.Clean(a.Path)]
		if !ok {
			return "", nil, fmt.Errorf("%s is not a lifecycle binary this cell has (it has %s and %s)",
				a.Path, bbs.LifecycleBuilder, bbs.LifecycleLauncher)
		}
		return r.cfg.LifecycleBinary, append([]string{verb}, lifecycleArgs(dir, verb, a.Args, setupTo)...), nil
	}
	p := hostPath(dir, a.Path, setupTo)
	if !filepath.IsAbs(p) && filepath.Base(a.Path) == a.Path {
		p = a.Path // a bare command name: looked up in PATH
	}
	return p, a.Args, nil
}

// lifecycleArgs rewrites a lifecycle binary's container paths to the
// container's directories (see above).
func lifecycleArgs(dir, verb string, args []string, setupTo string) []string {
	out := make([]string, len(args))
	keep := false // the next argument is the builder's --command value
	for i, arg := range args {
		switch {
		case keep:
			out[i], keep = arg, false
		case verb == "builder" && (arg == "--command" || arg == "-command"):
			out[i], keep = arg, true
		case verb == "builder" && (strings.HasPrefix(arg, "--command=") || strings.HasPrefix(arg, "-command=")):
			out[i] = arg
		default:
			out[i] = lifecycleArg(dir, arg, setupTo)
		}
	}
	return out
}

func lifecycleArg(dir, arg, setupTo string) string {
	if strings.HasPrefix(arg, "-") {
		if i := strings.IndexByte(arg, '='); i > 0 {
			return arg[:i+1] + lifecycleArg(dir, arg[i+1:], setupTo)
		}
		return arg
	}
	rel, ok := containerRel(arg, setupTo)
	switch {
	case !ok:
		return arg
	case rel == ".":
		return dir
	}
	// Not filepath.Join: it would clean the rest of the argument (a start
	// command such as "/home/vcap/app/run --url=http://x" must keep its "//").
	return dir + string(filepath.Separator) + filepath.FromSlash(rel)
}

// containerRel maps an absolute container path to a path relative to the
// container's directory: the setup's destination and /home/vcap/app are
// app/, /home/vcap is the directory itself ("."), /tmp is tmp/. ok is false
// for any other path (and for a relative one). What follows the prefix is
// kept as it is (not cleaned).
func containerRel(p, setupTo string) (rel string, ok bool) {
	if !path.IsAbs(p) {
		return "", false
	}
	for _, m := range [...]struct{ from, to string }{{setupTo, "app"}, {VCAPHome, "app"}, {"/home/vcap", "."}, {"/tmp", "tmp"}} {
		if m.from == "" || !path.IsAbs(m.from) || path.Clean(m.from) == "/" {
			continue
		}
		from := path.Clean(m.from)
		if p == from {
			return m.to, true
		}
		if rest, found := strings.CutPrefix(p, from+"/"); found {
			if m.to == "." {
				return rest, true
			}
			return m.to + "/" + rest, true
		}
	}
	return "", false
}
