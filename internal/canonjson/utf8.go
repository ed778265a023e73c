package canonjson

import (
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"unicode/utf8"
)

var (
	marshalerType     = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

// maxWalkDepth bounds the search of invalidUTF8. encoding/json has already
// encoded the value, so the paths it follows end; the bound only guards
// the few it may follow that encoding/json does not (fields hidden by a
// clash of names between embedded structs).
const maxWalkDepth = 10_000

// invalidUTF8 reports whether v holds a Go string that encoding/json
// encodes with invalid UTF-8 replaced, and where, as a path from the root
// $ such as $.Steps[2]["text"]. It follows v the way encoding/json does: exported and
// embedded struct fields not tagged "-", map keys and values, elements,
// and the text of encoding.TextMarshalers. It does not enter a
// json.Marshaler, whose output Canonicalize has checked as JSON text.
func invalidUTF8(v reflect.Value) (string, bool) {
	return walk(v, "$", 0)
}

func walk(v reflect.Value, path string, depth int) (string, bool) {
	if !v.IsValid() || depth > maxWalkDepth {
		return "", false
	}
	t := v.Type()
	// The order of encoding/json's newTypeEncoder: a method with a pointer
	// receiver counts only when the value is addressable.
	addressable := t.Kind() != reflect.Pointer && v.CanAddr()
	switch {
	case addressable && reflect.PointerTo(t).Implements(marshalerType), t.Implements(marshalerType):
		return "", false
	case addressable && reflect.PointerTo(t).Implements(textMarshalerType):
		return invalidText(v.Addr(), path)
	case t.Implements(textMarshalerType):
		return invalidText(v, path)
	}
	switch t.Kind() {
	case reflect.String:
		return path, !utf8.ValidString(v.String())
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			return "", false
		}
		return walk(v.Elem(), path, depth+1)
	case reflect.Struct:
		return walkStruct(v, path, depth)
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			k := iter.Key()
			keyPath := path + "[" + keyText(k) + "]"
			if k.Kind() == reflect.String {
				if !utf8.ValidString(k.String()) {
					return keyPath, true
				}
			} else if p, found := walk(k, keyPath, depth+1); found {
				return p, true
			}
			if p, found := walk(iter.Value(), keyPath, depth+1); found {
				return p, true
			}
		}
	case reflect.Slice, reflect.Array:
		if !mayHoldText(t.Elem()) {
			return "", false // numbers, booleans, and []byte as base64
		}
		for i := range v.Len() {
			if p, found := walk(v.Index(i), path+"["+strconv.Itoa(i)+"]", depth+1); found {
				return p, true
			}
		}
	}
	return "", false
}

// walkStruct searches the fields of struct v that encoding/json encodes.
func walkStruct(v reflect.Value, path string, depth int) (string, bool) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		// encoding/json enters embedded structs even when unexported, for
		// their exported fields.
		embeddedStruct := f.Anonymous && ft.Kind() == reflect.Struct
		if !f.IsExported() && !embeddedStruct {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		fv := v.Field(i)
		if embeddedStruct && (tag == "" || tag[0] == ',') {
			// An untagged embedded struct contributes its fields, not
			// itself: encoding/json never calls its methods.
			if fv.Kind() == reflect.Pointer {
				if fv.IsNil() {
					continue
				}
				fv = fv.Elem()
			}
			if p, found := walkStruct(fv, path, depth+1); found {
				return p, true
			}
			continue
		}
		if p, found := walk(fv, path+"."+f.Name, depth+1); found {
			return p, true
		}
	}
	return "", false
}

// invalidText reports whether the text of the encoding.TextMarshaler v is
// invalid UTF-8.
func invalidText(v reflect.Value, path string) (string, bool) {
	if (v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface) && v.IsNil() || !v.CanInterface() {
		return "", false
	}
	m, ok := v.Interface().(encoding.TextMarshaler)
	if !ok {
		return "", false
	}
	// encoding/json has called it already, without error.
	text, err := m.MarshalText()
	return path, err == nil && !utf8.Valid(text)
}

// mayHoldText reports whether a value of type t may hold a string that
// encoding/json encodes.
func mayHoldText(t reflect.Type) bool {
	if t.Implements(marshalerType) || t.Implements(textMarshalerType) ||
		reflect.PointerTo(t).Implements(marshalerType) || reflect.PointerTo(t).Implements(textMarshalerType) {
		return true
	}
	switch t.Kind() {
	case reflect.String, reflect.Interface, reflect.Pointer, reflect.Struct, reflect.Map, reflect.Slice, reflect.Array:
		return true
	}
	return false
}

// keyText writes map key k for a path, quoted so that invalid UTF-8 shows.
func keyText(k reflect.Value) string {
	if k.Kind() == reflect.String {
		return strconv.Quote(k.String())
	}
	return strconv.Quote(fmt.Sprint(k))
}
