package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"
)

// AddToken appends a token to http.tokens in the file at path, keeping the
// file's comments, creating the file from Init when it does not exist.
// A token of the same name is an error.
func AddToken(path string, t Token) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		data = Init()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return fmt.Errorf("config file %s: %w", path, err)
		}
	} else if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	var c Config
	if err := decode(data, &c); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	for _, old := range c.HTTP.Tokens {
		if old.Name == t.Name {
			return fmt.Errorf("config file %s already has a token named %q; pick another name", path, t.Name)
		}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
	}
	root := doc.Content[0]
	httpNode := child(root, "http", yaml.MappingNode)
	tokens := child(httpNode, "tokens", yaml.SequenceNode)
	tokens.Style = 0 // block style, even if it was written as []
	var item yaml.Node
	if err := item.Encode(t); err != nil {
		return fmt.Errorf("encode token: %w", err)
	}
	tokens.Content = append(tokens.Content, &item)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	out := buf.Bytes()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// child returns the value node of key in a mapping, adding it if missing.
func child(m *yaml.Node, key string, kind yaml.Kind) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			v := m.Content[i+1]
			if v.Kind != kind {
				*v = yaml.Node{Kind: kind}
			}
			return v
		}
	}
	k := &yaml.Node{Kind: yaml.ScalarNode, Value: key}
	v := &yaml.Node{Kind: kind}
	m.Content = append(m.Content, k, v)
	return v
}
