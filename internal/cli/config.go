package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ConfigFile is the name of the CLI configuration inside $MINICF_HOME.
const ConfigFile = "config.json"

// Config is $MINICF_HOME/config.json: where the Cloud Controller is, the
// token to present, and the targeted org and space. `minicf up` writes it.
type Config struct {
	// API is the Cloud Controller's base URL, e.g. http://127.0.0.1:9022.
	API string `json:"api"`
	// AccessToken is sent as "Authorization: bearer <token>".
	AccessToken string `json:"access_token"`

	OrganizationGUID string `json:"organization_guid"`
	SpaceGUID        string `json:"space_guid"`
	OrganizationName string `json:"organization_name"`
	SpaceName        string `json:"space_name"`

	// Router is the HTTP router's address (host:port or URL), used to print
	// the curl line after a push. Optional.
	Router string `json:"router,omitempty"`
	// LogCache is log-cache's base URL; empty means the API URL (minicf's
	// Cloud Controller serves log-cache's read endpoint). Optional.
	LogCache string `json:"log_cache,omitempty"`
	// Trace is the trace API's URL (minicf trace), e.g.
	// http://127.0.0.1:8083. Optional.
	Trace string `json:"trace,omitempty"`
}

// DefaultHome is $MINICF_HOME, else ~/.minicf.
func DefaultHome() string {
	if h := os.Getenv("MINICF_HOME"); h != "" {
		return h
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".minicf")
	}
	return ".minicf"
}

// ErrNoConfig says that no foundation is targeted.
var ErrNoConfig = errors.New("no foundation targeted: run `minicf up` first, or set MINICF_HOME")

// maxConfigSize bounds config.json.
const maxConfigSize = 1 << 20

// LoadConfig reads home/config.json. A missing file is ErrNoConfig.
func LoadConfig(home string) (*Config, error) {
	path := filepath.Join(home, ConfigFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (%s does not exist)", ErrNoConfig, path)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxConfigSize)
	}
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("%s is not valid JSON: %w", path, err)
	}
	if strings.TrimSpace(cfg.API) == "" {
		return nil, fmt.Errorf("%w (%s has no \"api\")", ErrNoConfig, path)
	}
	cfg.API = strings.TrimRight(strings.TrimSpace(cfg.API), "/")
	return &cfg, nil
}

// SaveConfig writes home/config.json with mode 0600 (it holds a token),
// atomically: a reader sees the old file or the new one.
func SaveConfig(home string, cfg *Config) error {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	tmp, err := os.CreateTemp(home, ".config-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(home, ConfigFile))
}
