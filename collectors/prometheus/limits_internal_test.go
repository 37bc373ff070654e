package prometheus

import (
	"encoding/json"
	"testing"
)

// FuzzArrayLen: for any valid JSON, arrayLen counts what encoding/json
// reads as the elements of an array, and 0 for anything else.
//
//	go test ./collectors/prometheus -run '^$' -fuzz FuzzArrayLen -fuzztime 30s
func FuzzArrayLen(f *testing.F) {
	for _, s := range []string{
		`[]`, ` [ ] `, `null`, `{}`, `"[1,2]"`, `3`,
		`[1]`, `[1,2,3]`, `[[1,2],[3]]`, `[{"a":[1,2],"b":"x,y"}]`,
		`["a\"b,c", "\\", "]"]`, `[null,true,false,{"metric":{},"value":[1,"2"]}]`,
		"[\n1 ,\t2\r]",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			t.Skip()
		}
		want := 0
		var list []json.RawMessage
		if json.Unmarshal(raw, &list) == nil {
			want = len(list)
		}
		if got := arrayLen(raw); got != want {
			t.Errorf("arrayLen(%q) = %d, want %d", raw, got, want)
		}
	})
}
