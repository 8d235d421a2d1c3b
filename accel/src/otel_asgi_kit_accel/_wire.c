/* The common case of otel_asgi_kit.sdk.wire.encode_span and wire_logs.encode_log_fields, in C.
 *
 * Both functions write the very bytes of their Python counterparts (the tests
 * compare them on shared vectors), for the common case only: a span without
 * trace state, events, links or dropped counts, and attribute values that are
 * str, bool, int (int64), or float; a log record with a str body and such
 * attributes. Anything else — or anything unexpected, such as a missing field
 * or a string that is not valid UTF-8 — returns None, and the caller encodes
 * with the Python writer, which handles every case. So this file never has to
 * be right about the rare cases: it only has to say it does not handle them.
 *
 * Only the stable C API is used (no private CPython functions).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <stdint.h>

#define BUF_SIZE 8192 /* larger messages go to the Python writer */
#define HEAD 16       /* room in front of a message for its tag and length */

typedef struct {
    unsigned char *p;
    unsigned char *end;
} out_t;

static PyObject *s_context, *s_parent, *s_name, *s_kind, *s_start_time, *s_end_time, *s_status, *s_attributes,
    *s_events, *s_links, *s_value, *s_dict, *s_dropped,
    *s_status_code, *s_description;
static PyObject *int_64, *mask_64;
/* Set by configure(): the SDK's SpanContext type (a 6-tuple), its empty TraceState, and the
 * SpanKind / StatusCode members in value order, compared by identity (their properties are Python code). */
static PyObject *span_context_type, *default_trace_state, *kinds, *status_codes;

static int varint_size(uint64_t n) {
    int size = 1;
    while (n >= 0x80) {
        n >>= 7;
        size++;
    }
    return size;
}

static int put_byte(out_t *o, unsigned char b) {
    if (o->p >= o->end) return -1;
    *o->p++ = b;
    return 0;
}

static int put_varint(out_t *o, uint64_t n) {
    while (n >= 0x80) {
        if (put_byte(o, (unsigned char)((n & 0x7F) | 0x80))) return -1;
        n >>= 7;
    }
    return put_byte(o, (unsigned char)n);
}

static int put_bytes(out_t *o, const char *data, Py_ssize_t n) {
    if (o->end - o->p < n) return -1;
    memcpy(o->p, data, (size_t)n);
    o->p += n;
    return 0;
}

static int put_fixed64(out_t *o, uint64_t v) {
    if (o->end - o->p < 8) return -1;
    for (int i = 0; i < 8; i++) *o->p++ = (unsigned char)(v >> (8 * i));
    return 0;
}

static int put_fixed32(out_t *o, uint32_t v) {
    if (o->end - o->p < 4) return -1;
    for (int i = 0; i < 4; i++) *o->p++ = (unsigned char)(v >> (8 * i));
    return 0;
}

static int put_big_endian(out_t *o, uint64_t v) {
    if (o->end - o->p < 8) return -1;
    for (int i = 7; i >= 0; i--) *o->p++ = (unsigned char)(v >> (8 * i));
    return 0;
}

/* tag, length, UTF-8 of a str; 1 = not handled here (not a str, or not encodable) */
static int put_string_field(out_t *o, unsigned char tag, PyObject *text) {
    Py_ssize_t n;
    const char *data;
    if (!PyUnicode_Check(text)) return 1;
    data = PyUnicode_AsUTF8AndSize(text, &n);
    if (data == NULL) {
        PyErr_Clear(); /* lone surrogates: the Python writer repairs them */
        return 1;
    }
    if (put_byte(o, tag) || put_varint(o, (uint64_t)n) || put_bytes(o, data, n)) return -1;
    return 0;
}

/* An AnyValue of the common kinds; 1 = not handled here. */
typedef struct {
    int kind; /* 1 str, 2 bool, 3 int, 4 float */
    const char *data;
    Py_ssize_t n;
    uint64_t bits;
} value_t;

static int read_value(PyObject *value, value_t *v) {
    if (PyUnicode_Check(value)) {
        v->data = PyUnicode_AsUTF8AndSize(value, &v->n);
        if (v->data == NULL) {
            PyErr_Clear();
            return 1;
        }
        v->kind = 1;
        return 0;
    }
    if (PyBool_Check(value)) {
        v->kind = 2;
        v->bits = value == Py_True;
        return 0;
    }
    if (PyLong_Check(value)) {
        int overflow = 0;
        long long n = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow || (n == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return 1; /* outside int64: the Python writer leaves the attribute out */
        }
        v->kind = 3;
        v->bits = (uint64_t)n;
        return 0;
    }
    if (PyFloat_Check(value)) {
        double d = PyFloat_AsDouble(value);
        if (d == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return 1;
        }
        v->kind = 4;
        memcpy(&v->bits, &d, 8);
        return 0;
    }
    return 1;
}

static uint64_t any_value_size(const value_t *v) {
    switch (v->kind) {
    case 1: return 1 + varint_size((uint64_t)v->n) + (uint64_t)v->n;
    case 2: return 2;
    case 3: return 1 + varint_size(v->bits);
    default: return 9;
    }
}

static int put_any_value(out_t *o, const value_t *v) {
    switch (v->kind) {
    case 1: return put_byte(o, 0x0a) || put_varint(o, (uint64_t)v->n) || put_bytes(o, v->data, v->n);
    case 2: return put_byte(o, 0x10) || put_byte(o, (unsigned char)v->bits);
    case 3: return put_byte(o, 0x18) || put_varint(o, v->bits);
    default: return put_byte(o, 0x21) || put_fixed64(o, v->bits);
    }
}

/* Repeated KeyValue field ``tag``; 1 = not handled here. */
static int put_attributes(out_t *o, unsigned char tag, PyObject *attrs) {
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(attrs, &pos, &key, &value)) {
        Py_ssize_t key_n;
        const char *key_data;
        value_t v;
        uint64_t any_size, kv_size;
        int r;
        if (!PyUnicode_CheckExact(key)) return 1;
        key_data = PyUnicode_AsUTF8AndSize(key, &key_n);
        if (key_data == NULL) {
            PyErr_Clear();
            return 1;
        }
        r = read_value(value, &v);
        if (r) return r;
        any_size = any_value_size(&v);
        kv_size = (key_n ? 1 + varint_size((uint64_t)key_n) + (uint64_t)key_n : 0) + 1 + varint_size(any_size) + any_size;
        if (put_byte(o, tag) || put_varint(o, kv_size)) return -1;
        if (key_n && (put_byte(o, 0x0a) || put_varint(o, (uint64_t)key_n) || put_bytes(o, key_data, key_n))) return -1;
        if (put_byte(o, 0x12) || put_varint(o, any_size) || put_any_value(o, &v)) return -1;
    }
    return 0;
}

/* The plain dict inside the SDK's BoundedAttributes (or a dict itself); NULL = not handled here. */
static PyObject *attribute_dict(PyObject *container) {
    PyObject *inner;
    if (PyDict_CheckExact(container)) {
        Py_INCREF(container);
        return container;
    }
    inner = PyObject_GetAttr(container, s_dict);
    if (inner == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (!PyDict_CheckExact(inner)) {
        Py_DECREF(inner);
        return NULL;
    }
    return inner;
}

/* Truthy ``getattr(obj, "dropped", 0)``: -1 error/unknown, 1 yes, 0 no. */
static int has_dropped(PyObject *obj) {
    PyObject *dropped;
    int r;
    if (PyTuple_CheckExact(obj) || PyDict_CheckExact(obj)) return 0;
    dropped = PyObject_GetAttr(obj, s_dropped);
    if (dropped == NULL) {
        PyErr_Clear();
        return 0;
    }
    r = PyObject_IsTrue(dropped);
    Py_DECREF(dropped);
    if (r < 0) {
        PyErr_Clear();
        return -1;
    }
    return r;
}

static int read_u64(PyObject *obj, uint64_t *out) {
    *out = PyLong_AsUnsignedLongLong(obj);
    if (*out == (uint64_t)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 1;
    }
    return 0;
}

/* A 128-bit trace id, big-endian, without private CPython calls. */
static int put_trace_id(out_t *o, PyObject *trace_id) {
    PyObject *hi_obj, *lo_obj;
    uint64_t hi, lo;
    int r;
    if (!PyLong_Check(trace_id)) return 1;
    hi_obj = PyNumber_Rshift(trace_id, int_64);
    lo_obj = hi_obj ? PyNumber_And(trace_id, mask_64) : NULL;
    if (lo_obj == NULL) {
        Py_XDECREF(hi_obj);
        PyErr_Clear();
        return 1;
    }
    r = read_u64(hi_obj, &hi) || read_u64(lo_obj, &lo);
    Py_DECREF(hi_obj);
    Py_DECREF(lo_obj);
    if (r) return 1;
    if (put_big_endian(o, hi) || put_big_endian(o, lo)) return -1;
    return 0;
}

/* The value of an enum member: by identity among ``members`` (in value order), else its ``value``. */
static int enum_number(PyObject *member, PyObject *members, uint64_t *out) {
    PyObject *value;
    int r;
    if (members != NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(members); i++) {
            if (PyTuple_GET_ITEM(members, i) == member) {
                *out = (uint64_t)i;
                return 0;
            }
        }
    }
    value = PyObject_GetAttr(member, s_value);
    if (value == NULL) {
        PyErr_Clear();
        return 1;
    }
    r = PyLong_Check(value) ? read_u64(value, out) : 1;
    Py_DECREF(value);
    return r;
}

/* The finished message: tag, length and body, as bytes. */
static PyObject *finish(unsigned char *buf, unsigned char *body_end, unsigned char tag) {
    uint64_t n = (uint64_t)(body_end - (buf + HEAD));
    int size = varint_size(n);
    unsigned char *start = buf + HEAD - 1 - size;
    out_t head = {start, buf + HEAD};
    put_byte(&head, tag);
    put_varint(&head, n);
    return PyBytes_FromStringAndSize((const char *)start, body_end - start);
}

#define TRY(expr)                          \
    do {                                   \
        int r_ = (expr);                   \
        if (r_) goto not_handled;          \
    } while (0)

static PyObject *encode_span(PyObject *module, PyObject *span) {
    unsigned char buf[BUF_SIZE];
    out_t o = {buf + HEAD, buf + BUF_SIZE};
    PyObject *ctx = NULL, *parent = NULL, *name = NULL, *kind = NULL, *start = NULL, *end = NULL, *status = NULL,
             *attrs = NULL, *attr_dict = NULL, *events = NULL, *links = NULL, *code = NULL, *description = NULL,
             *trace_state, *result = NULL;
    uint64_t span_id, value, kind_number;
    int remote_parent = 0, truth;

    if (span_context_type == NULL) goto not_handled; /* configure() not called */
    ctx = PyObject_GetAttr(span, s_context);
    parent = ctx ? PyObject_GetAttr(span, s_parent) : NULL;
    name = parent ? PyObject_GetAttr(span, s_name) : NULL;
    kind = name ? PyObject_GetAttr(span, s_kind) : NULL;
    start = kind ? PyObject_GetAttr(span, s_start_time) : NULL;
    end = start ? PyObject_GetAttr(span, s_end_time) : NULL;
    status = end ? PyObject_GetAttr(span, s_status) : NULL;
    attrs = status ? PyObject_GetAttr(span, s_attributes) : NULL;
    events = attrs ? PyObject_GetAttr(span, s_events) : NULL;
    links = events ? PyObject_GetAttr(span, s_links) : NULL;
    if (links == NULL) goto not_handled;

    /* trace_id, span_id, trace_state: the SDK's SpanContext is a 6-tuple */
    if ((PyObject *)Py_TYPE(ctx) != span_context_type || PyTuple_GET_SIZE(ctx) != 6) goto not_handled;
    TRY(put_byte(&o, 0x0a) || put_byte(&o, 0x10));
    TRY(put_trace_id(&o, PyTuple_GET_ITEM(ctx, 0)));
    TRY(!PyLong_Check(PyTuple_GET_ITEM(ctx, 1)) || read_u64(PyTuple_GET_ITEM(ctx, 1), &span_id));
    TRY(put_byte(&o, 0x12) || put_byte(&o, 0x08) || put_big_endian(&o, span_id));
    trace_state = PyTuple_GET_ITEM(ctx, 4);
    if (trace_state != Py_None && trace_state != default_trace_state && PyObject_IsTrue(trace_state) != 0)
        goto not_handled; /* a trace state (or an error): the Python writer */
    /* parent span id */
    if (parent != Py_None) {
        PyObject *is_remote;
        if ((PyObject *)Py_TYPE(parent) != span_context_type || PyTuple_GET_SIZE(parent) != 6) goto not_handled;
        TRY(!PyLong_Check(PyTuple_GET_ITEM(parent, 1)) || read_u64(PyTuple_GET_ITEM(parent, 1), &value));
        TRY(put_byte(&o, 0x22) || put_byte(&o, 0x08) || put_big_endian(&o, value));
        is_remote = PyTuple_GET_ITEM(parent, 2);
        remote_parent = is_remote == Py_True ? 1 : is_remote == Py_False ? 0 : PyObject_IsTrue(is_remote);
        if (remote_parent < 0) goto not_handled;
    }
    /* name, kind */
    if (!PyUnicode_Check(name)) goto not_handled;
    if (PyUnicode_GET_LENGTH(name)) TRY(put_string_field(&o, 0x2a, name));
    TRY(enum_number(kind, kinds, &kind_number));
    TRY(put_byte(&o, 0x30) || put_varint(&o, kind_number + 1));
    /* start, end */
    if (start != Py_None) {
        TRY(!PyLong_Check(start) || read_u64(start, &value));
        if (value) TRY(put_byte(&o, 0x39) || put_fixed64(&o, value));
    }
    if (end != Py_None) {
        TRY(!PyLong_Check(end) || read_u64(end, &value));
        if (value) TRY(put_byte(&o, 0x41) || put_fixed64(&o, value));
    }
    /* attributes */
    attr_dict = attribute_dict(attrs);
    if (attr_dict == NULL) goto not_handled;
    if (PyDict_GET_SIZE(attr_dict)) {
        if (has_dropped(attrs) != 0) goto not_handled;
        TRY(put_attributes(&o, 0x4a, attr_dict));
    }
    /* events and links: none, and none dropped (else the Python writer) */
    if (PyObject_IsTrue(events) != 0 || has_dropped(events) != 0) goto not_handled;
    if (PyObject_IsTrue(links) != 0 || has_dropped(links) != 0) goto not_handled;
    /* status: the SDK's Status keeps _status_code and _description */
    if (status != Py_None) {
        uint64_t code_number;
        int described;
        code = PyObject_GetAttr(status, s_status_code);
        description = code ? PyObject_GetAttr(status, s_description) : NULL;
        if (description == NULL) goto not_handled;
        TRY(enum_number(code, status_codes, &code_number));
        described = description != Py_None && PyObject_IsTrue(description);
        if (described < 0) goto not_handled;
        if (described && !PyUnicode_Check(description)) goto not_handled;
        if (!described && !code_number) {
            TRY(put_byte(&o, 0x7a) || put_byte(&o, 0x00));
        } else {
            Py_ssize_t n = 0;
            const char *data = NULL;
            uint64_t size = 0;
            if (described) {
                data = PyUnicode_AsUTF8AndSize(description, &n);
                if (data == NULL) goto not_handled;
                size += 1 + varint_size((uint64_t)n) + (uint64_t)n;
            }
            if (code_number) size += 1 + varint_size(code_number);
            TRY(put_byte(&o, 0x7a) || put_varint(&o, size));
            if (described) TRY(put_byte(&o, 0x12) || put_varint(&o, (uint64_t)n) || put_bytes(&o, data, n));
            if (code_number) TRY(put_byte(&o, 0x18) || put_varint(&o, code_number));
        }
    }
    /* flags: whether the parent is remote is known */
    TRY(put_byte(&o, 0x85) || put_byte(&o, 0x01) || put_fixed32(&o, remote_parent ? 0x300 : 0x100));
    result = finish(buf, o.p, 0x12);
    goto done;

not_handled:
    PyErr_Clear();
    result = Py_None;
    Py_INCREF(result);
done:
    Py_XDECREF(ctx);
    Py_XDECREF(parent);
    Py_XDECREF(name);
    Py_XDECREF(kind);
    Py_XDECREF(start);
    Py_XDECREF(end);
    Py_XDECREF(status);
    Py_XDECREF(attrs);
    Py_XDECREF(attr_dict);
    Py_XDECREF(events);
    Py_XDECREF(links);
    Py_XDECREF(code);
    Py_XDECREF(description);
    return result;
}

/* configure(SpanContext, DEFAULT_TRACE_STATE, SpanKind members by value, StatusCode members by value) */
static PyObject *configure(PyObject *module, PyObject *args) {
    PyObject *context_type, *trace_state, *kind_members, *code_members;
    if (!PyArg_ParseTuple(args, "OOO!O!", &context_type, &trace_state, &PyTuple_Type, &kind_members, &PyTuple_Type,
                          &code_members))
        return NULL;
    Py_INCREF(context_type);
    Py_INCREF(trace_state);
    Py_INCREF(kind_members);
    Py_INCREF(code_members);
    Py_XSETREF(span_context_type, context_type);
    Py_XSETREF(default_trace_state, trace_state);
    Py_XSETREF(kinds, kind_members);
    Py_XSETREF(status_codes, code_members);
    Py_RETURN_NONE;
}

/* encode_log_fields(timestamp, severity, severity_text, body, attrs, dropped, flags, trace_id, span_id,
 *                   observed_timestamp, event_name) */
static PyObject *encode_log_fields(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    unsigned char buf[BUF_SIZE];
    out_t o = {buf + HEAD, buf + BUF_SIZE};
    uint64_t value;
    int truth;
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "encode_log_fields takes 11 arguments");
        return NULL;
    }
    /* timestamp, severity, severity text */
    if (args[0] != Py_None) {
        TRY(!PyLong_Check(args[0]) || read_u64(args[0], &value));
        if (value) TRY(put_byte(&o, 0x09) || put_fixed64(&o, value));
    }
    if (args[1] != Py_None) {
        TRY(!PyLong_Check(args[1]) || read_u64(args[1], &value));
        if (value) TRY(put_byte(&o, 0x10) || put_varint(&o, value));
    }
    if (args[2] != Py_None) {
        truth = PyObject_IsTrue(args[2]);
        if (truth < 0) goto not_handled;
        if (truth) TRY(put_string_field(&o, 0x1a, args[2]));
    }
    /* body: a str only */
    {
        Py_ssize_t n;
        const char *data;
        if (!PyUnicode_CheckExact(args[3])) goto not_handled;
        data = PyUnicode_AsUTF8AndSize(args[3], &n);
        if (data == NULL) goto not_handled;
        TRY(put_byte(&o, 0x2a) || put_varint(&o, 1 + varint_size((uint64_t)n) + (uint64_t)n));
        TRY(put_byte(&o, 0x0a) || put_varint(&o, (uint64_t)n) || put_bytes(&o, data, n));
    }
    /* attributes, dropped */
    if (args[4] != Py_None) {
        if (!PyDict_CheckExact(args[4])) goto not_handled;
        TRY(put_attributes(&o, 0x32, args[4]));
    }
    TRY(!PyLong_Check(args[5]) || read_u64(args[5], &value));
    if (value) TRY(put_byte(&o, 0x38) || put_varint(&o, value));
    /* flags, trace id, span id */
    TRY(!PyLong_Check(args[6]) || read_u64(args[6], &value));
    if (value) TRY(put_byte(&o, 0x45) || put_fixed32(&o, (uint32_t)value));
    truth = PyObject_IsTrue(args[7]);
    if (truth < 0) goto not_handled;
    if (truth) TRY(put_byte(&o, 0x4a) || put_byte(&o, 0x10) || put_trace_id(&o, args[7]));
    TRY(!PyLong_Check(args[8]) || read_u64(args[8], &value));
    if (value) TRY(put_byte(&o, 0x52) || put_byte(&o, 0x08) || put_big_endian(&o, value));
    /* observed timestamp, event name */
    if (args[9] != Py_None) {
        TRY(!PyLong_Check(args[9]) || read_u64(args[9], &value));
        if (value) TRY(put_byte(&o, 0x59) || put_fixed64(&o, value));
    }
    if (args[10] != Py_None) {
        truth = PyObject_IsTrue(args[10]);
        if (truth < 0) goto not_handled;
        if (truth) TRY(put_string_field(&o, 0x62, args[10]));
    }
    return finish(buf, o.p, 0x12);

not_handled:
    PyErr_Clear();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"encode_span", (PyCFunction)encode_span, METH_O,
     "The OTLP Span (field 2 of ScopeSpans) of an SDK span, or None when the Python writer must do it."},
    {"configure", configure, METH_VARARGS,
     "The SDK's SpanContext type, empty TraceState, and SpanKind and StatusCode members in value order."},
    {"encode_log_fields", (PyCFunction)(void (*)(void))encode_log_fields, METH_FASTCALL,
     "The OTLP LogRecord (field 2 of ScopeLogs) of these fields, or None when the Python writer must do it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_wire", NULL, -1, methods, NULL, NULL, NULL, NULL};

#define INTERN(var, text)                                  \
    do {                                                   \
        var = PyUnicode_InternFromString(text);            \
        if (var == NULL) return NULL;                      \
    } while (0)

PyMODINIT_FUNC PyInit__wire(void) {
#if !PY_LITTLE_ENDIAN
    PyErr_SetString(PyExc_ImportError, "otel_asgi_kit_accel supports little-endian machines only");
    return NULL;
#endif
    INTERN(s_context, "_context");
    INTERN(s_parent, "_parent");
    INTERN(s_name, "_name");
    INTERN(s_kind, "_kind");
    INTERN(s_start_time, "_start_time");
    INTERN(s_end_time, "_end_time");
    INTERN(s_status, "_status");
    INTERN(s_attributes, "_attributes");
    INTERN(s_events, "_events");
    INTERN(s_links, "_links");
    INTERN(s_value, "value");
    INTERN(s_dict, "_dict");
    INTERN(s_dropped, "dropped");
    INTERN(s_status_code, "_status_code");
    INTERN(s_description, "_description");
    int_64 = PyLong_FromLong(64);
    mask_64 = PyLong_FromUnsignedLongLong(UINT64_MAX);
    if (int_64 == NULL || mask_64 == NULL) return NULL;
    return PyModule_Create(&module_def);
}
