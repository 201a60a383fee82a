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

// RemoveToken removes the token named name from http.tokens in the file
// at path, keeping the file's comments. A missing file or token is an
// error naming it.
func RemoveToken(path, name string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	removed := false
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		if httpNode := lookup(doc.Content[0], "http", yaml.MappingNode); httpNode != nil {
			if tokens := lookup(httpNode, "tokens", yaml.SequenceNode); tokens != nil {
				kept := tokens.Content[:0]
				for _, item := range tokens.Content {
					var t Token
					if item.Decode(&t) == nil && t.Name == name {
						removed = true
						continue
					}
					kept = append(kept, item)
				}
				tokens.Content = kept
			}
		}
	}
	if !removed {
		return fmt.Errorf("config file %s has no token named %q (http.tokens)", path, name)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// lookup returns the value node of key in a mapping if it has that kind.
func lookup(m *yaml.Node, key string, kind yaml.Kind) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key && m.Content[i+1].Kind == kind {
			return m.Content[i+1]
		}
	}
	return nil
}
