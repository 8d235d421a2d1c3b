/* The common case of the kit's ASGI request path (otel_asgi_kit.asgi.middleware), in C.
 *
 * ``Core(...)`` is built once from the kit's ``Instrumentation``: the Python
 * callables the request path calls (span start, context attach and detach,
 * the active-span table, the HTTP metrics, the query redactor, the clock) and
 * the kit's constants. ``Core.start(scope, send)`` does what the Python
 * adapter's ``_start`` and ``ServerRequest.__init__`` do and returns one object
 * that is the request's state and the app's ``send``: an instance of the
 * Python subclass of ``RequestBase`` the kit passes in, so every uncommon case
 * (an exception, a 5xx, 401/403, work after the response) is finished by the
 * kit's Python code on the very same fields.
 *
 * ``RequestBase.__call__(message)`` is the send wrapper: it counts the body,
 * adds the ``traceresponse`` header and returns the server's own awaitable;
 * the response's last message goes through the kit's Python coroutine
 * ``send_last`` (the duration ends after the server took it).
 *
 * ``RequestBase.finish_common(route, client, scheme, background)`` records a
 * request that ended the common way (a complete response below 500, not 401
 * or 403, no work after it, the kit's own span type) and returns True; in any
 * other case it returns False before touching anything, and the Python path
 * finishes the request. So this file only has to be right about the common
 * case; ``tests/test_accel_core.py`` checks that both paths export the same
 * spans and metrics for common and uncommon requests.
 *
 * Only the stable C API is used.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static PyObject *s_type, *s_headers, *s_query_string, *s_method, *s_scheme, *s_path, *s_http_version, *s_client,
    *s_http, *s_GET, *s_HTTP, *s_OTHER, *s_empty, *s_user_agent_name, *s_content_length_name, *s_k_method,
    *s_k_path, *s_k_scheme, *s_k_query, *s_k_method_original, *s_k_user_agent, *s_k_version, *s_k_route,
    *s_k_status, *s_k_client, *s_t_body, *s_t_start, *s_t_pathsend, *s_body, *s_more_body, *s_status_key,
    *s_set_kit_attributes, *s_end, *s_get_span_context, *s_get;

/* ------------------------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *request_type;   /* the Python subclass of RequestBase to instantiate */
    PyObject *inst;           /* the Instrumentation */
    PyObject *methods;        /* dict: known method -> itself */
    PyObject *fields;         /* frozenset of propagation header names (bytes) */
    PyObject *extract;        /* extract(headers) -> Context */
    PyObject *redact;         /* redact(query: str) -> str */
    PyObject *start_span;     /* start_span(name, parent, attributes) -> span */
    PyObject *attach;         /* attach(span, parent) -> token */
    PyObject *detach;         /* detach(token) */
    PyObject *current_task;   /* asyncio.current_task: the active-table key (None outside a loop) */
    PyObject *active;         /* dict: task -> span (leave = pop) */
    PyObject *metrics;        /* the HttpServerMetrics (recorded here as its methods do), or None */
    PyObject *perf_counter;   /* time.perf_counter */
    PyObject *time_ns;        /* time.time_ns */
    PyObject *trace_header;   /* header name (bytes) or None */
    PyObject *send_last;      /* async send_last(request, message) */
    PyObject *span_key;       /* scope key the span is stored under */
    PyObject *span_type;      /* the kit's ServerSpan type: finish_common handles only these */
    PyObject *make_root;      /* RootMaker for a span without parent, or None (start_span for all) */
    PyObject *end_span;       /* Ender (span, end_ns), or None: span.end(end_ns) */
    PyObject *decisions;      /* the tail sampler's trace id -> kept (a dict), or None */
    double background_min;    /* seconds after the response that make a background span */
} CoreObject;

typedef struct {
    PyObject_HEAD
    CoreObject *core;
    PyObject *inst, *span, *token, *task, *method, *scheme, *request_bytes, *server_send, *peer, *response_headers;
    int status;
    long long response_bytes;
    long long done_ns;
    double start;
    double done_at;
} RequestObject;

/* ------------------------------------------------------------------------------------------------ */
/* The CPython plumbing of the module's callable types (RootMaker, Ender, LogDirect, EcsLine), given the object
 * struct, its field list (FIELDS(X): X(name) per PyObject * field), prefix##_call and prefix##_init: a
 * vectorcall entry that refuses an object __init__ never filled (guard: a field init always sets), GC
 * traverse/clear/dealloc over the fields, tp_new installing the entry, tp_call through it, the type object. */

#define VISIT_FIELD(f) Py_VISIT(self->f);
#define CLEAR_FIELD(f) Py_CLEAR(self->f);
#define CALLABLE_TYPE(prefix, Object, FIELDS, guard, TypeName, label, doc)                                          \
    static PyObject *prefix##_vectorcall_entry(PyObject *callable, PyObject *const *args, size_t nargsf,           \
                                               PyObject *kwnames) {                                                \
        if (((Object *)callable)->guard == NULL) {                                                                   \
            PyErr_SetString(PyExc_RuntimeError, label " was not initialised");                                      \
            return NULL;                                                                                             \
        }                                                                                                            \
        return prefix##_call((Object *)callable, args, nargsf, kwnames);                                            \
    }                                                                                                                \
    static int prefix##_traverse(Object *self, visitproc visit, void *arg) {                                         \
        FIELDS(VISIT_FIELD)                                                                                          \
        return 0;                                                                                                    \
    }                                                                                                                \
    static int prefix##_clear(Object *self) {                                                                        \
        FIELDS(CLEAR_FIELD)                                                                                          \
        return 0;                                                                                                    \
    }                                                                                                                \
    static void prefix##_dealloc(Object *self) {                                                                     \
        PyObject_GC_UnTrack(self);                                                                                   \
        prefix##_clear(self);                                                                                        \
        Py_TYPE(self)->tp_free((PyObject *)self);                                                                    \
    }                                                                                                                \
    static PyObject *prefix##_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {                            \
        PyObject *self = PyType_GenericNew(type, args, kwargs);                                                      \
        if (self != NULL) ((vectorcallfunc *)((char *)self + type->tp_vectorcall_offset))[0] = prefix##_vectorcall_entry; \
        return self;                                                                                                 \
    }                                                                                                                \
    static PyObject *prefix##_tp_call(PyObject *self, PyObject *args, PyObject *kwargs) {                            \
        return PyVectorcall_Call(self, args, kwargs);                                                                \
    }                                                                                                                \
    typedef struct {                                                                                                 \
        Object base;                                                                                                 \
        vectorcallfunc vectorcall;                                                                                   \
    } Object##WithCall;                                                                                              \
    static PyTypeObject TypeName = {                                                                                 \
        PyVarObject_HEAD_INIT(NULL, 0).tp_name = "otel_asgi_kit_accel._core." label,                                \
        .tp_basicsize = sizeof(Object##WithCall),                                                                    \
        .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,                            \
        .tp_vectorcall_offset = offsetof(Object##WithCall, vectorcall),                                              \
        .tp_new = prefix##_new,                                                                                      \
        .tp_init = (initproc)prefix##_init,                                                                          \
        .tp_call = prefix##_tp_call,                                                                                 \
        .tp_dealloc = (destructor)prefix##_dealloc,                                                                  \
        .tp_traverse = (traverseproc)prefix##_traverse,                                                              \
        .tp_clear = (inquiry)prefix##_clear,                                                                         \
        .tp_doc = doc,                                                                                               \
    };

static PyTypeObject RequestBaseType;

/* ------------------------------------------------------------------------------------------------ */

static PyObject *scope_get(PyObject *scope, PyObject *key) {
    /* scope.get(key) of a dict scope (Core.start takes no other): a borrowed reference, or NULL */
    return PyDict_GetItemWithError(scope, key);
}

static PyObject *now(PyObject *clock) { return PyObject_CallNoArgs(clock); }

static int all_digits(PyObject *value) {
    if (!PyBytes_Check(value)) return 0;
    Py_ssize_t n = PyBytes_GET_SIZE(value);
    const char *p = PyBytes_AS_STRING(value);
    if (n == 0) return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9') return 0;
    return 1;
}

/* ------------------------------------------------------------------------------------------------ */
/* HistogramBase: otel_asgi_kit.metrics.http_aggregator.Histogram's recording in C (its readout stays
 * Python): cumulative bucket counts over explicit bounds (a value equal to a bound belongs to that
 * bound's bucket, as bisect_left), sum, min, max, and per bucket the last sampled request as exemplar. */

typedef struct {
    PyObject_HEAD
    PyObject *bounds;        /* as given (a sequence of numbers) */
    double *limits;          /* the bounds as doubles */
    Py_ssize_t n;            /* number of bounds; buckets: n + 1 */
    unsigned long long *counts;
    double sum, min, max;
    PyObject *exemplars;     /* None, or a list of n + 1 slots (None or (value, span context, end ns)) */
} HistObject;

static PyTypeObject HistType;

static int hist_init(HistObject *self, PyObject *args, PyObject *kwargs) {
    PyObject *bounds;
    static char *names[] = {"bounds", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O", names, &bounds)) return -1;
    PyObject *seq = PySequence_Fast(bounds, "bounds must be a sequence");
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    double *limits = PyMem_Calloc(n ? n : 1, sizeof(double));
    unsigned long long *counts = PyMem_Calloc(n + 1, sizeof(unsigned long long));
    if (limits == NULL || counts == NULL) {
        PyMem_Free(limits);
        PyMem_Free(counts);
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        limits[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
        if (limits[i] == -1.0 && PyErr_Occurred()) {
            PyMem_Free(limits);
            PyMem_Free(counts);
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    PyMem_Free(self->limits);
    PyMem_Free(self->counts);
    self->limits = limits;
    self->counts = counts;
    self->n = n;
    Py_XSETREF(self->bounds, Py_NewRef(bounds));
    Py_XSETREF(self->exemplars, Py_NewRef(Py_None));
    self->sum = 0.0;
    self->min = Py_HUGE_VAL;
    self->max = -Py_HUGE_VAL;
    return 0;
}

/* Count value; with a span context, keep (value, context, end_ns) as its bucket's exemplar. */
static int hist_add(HistObject *self, PyObject *value, PyObject *context, PyObject *end_ns) {
    if (self->counts == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Histogram was not initialised");
        return -1;
    }
    double v = PyFloat_AsDouble(value);
    if (v == -1.0 && PyErr_Occurred()) return -1;
    Py_ssize_t lo = 0, hi = self->n; /* bisect_left */
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (self->limits[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (context != NULL) {
        if (self->exemplars == Py_None) {
            PyObject *slots = PyList_New(self->n + 1);
            if (slots == NULL) return -1;
            for (Py_ssize_t i = 0; i <= self->n; i++) PyList_SET_ITEM(slots, i, Py_NewRef(Py_None));
            Py_SETREF(self->exemplars, slots);
        }
        if (!PyList_Check(self->exemplars) || PyList_GET_SIZE(self->exemplars) != self->n + 1) {
            PyErr_SetString(PyExc_TypeError, "exemplars must be None or a list of one slot per bucket");
            return -1;
        }
        PyObject *slot = PyTuple_Pack(3, value, context, end_ns);
        if (slot == NULL) return -1;
        PyList_SetItem(self->exemplars, lo, slot); /* steals slot */
    }
    self->counts[lo]++;
    self->sum += v;
    if (v < self->min) self->min = v;
    if (v > self->max) self->max = v;
    return 0;
}

static PyObject *hist_record(HistObject *self, PyObject *value) {
    if (hist_add(self, value, NULL, NULL)) return NULL;
    Py_RETURN_NONE;
}

static PyObject *hist_record_sampled(HistObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "record_sampled(value, span_context, end_ns)");
        return NULL;
    }
    if (hist_add(self, args[0], args[1], args[2])) return NULL;
    Py_RETURN_NONE;
}

static PyObject *hist_get_buckets(HistObject *self, void *closure) {
    if (self->counts == NULL) return PyList_New(0);
    PyObject *list = PyList_New(self->n + 1);
    if (list == NULL) return NULL;
    for (Py_ssize_t i = 0; i <= self->n; i++) {
        PyObject *count = PyLong_FromUnsignedLongLong(self->counts[i]);
        if (count == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, count);
    }
    return list;
}

static PyObject *hist_get_bounds(HistObject *self, void *closure) { return Py_NewRef(self->bounds ? self->bounds : Py_None); }

static PyGetSetDef hist_getset[] = {
    {"buckets", (getter)hist_get_buckets, NULL, "The bucket counts (a new list).", NULL},
    {"bounds", (getter)hist_get_bounds, NULL, "The bounds as given.", NULL},
    {NULL},
};

static PyMemberDef hist_members[] = {
    {"sum", T_DOUBLE, offsetof(HistObject, sum), READONLY, NULL},
    {"min", T_DOUBLE, offsetof(HistObject, min), READONLY, NULL},
    {"max", T_DOUBLE, offsetof(HistObject, max), READONLY, NULL},
    {"exemplars", T_OBJECT, offsetof(HistObject, exemplars), READONLY, NULL},
    {NULL},
};

static PyMethodDef hist_methods[] = {
    {"record", (PyCFunction)hist_record, METH_O, "Count one value."},
    {"record_sampled", (PyCFunction)(void (*)(void))hist_record_sampled, METH_FASTCALL,
     "Count one value and keep it as its bucket's exemplar."},
    {NULL},
};

static int hist_traverse(HistObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->bounds);
    Py_VISIT(self->exemplars);
    return 0;
}

static int hist_clear(HistObject *self) {
    Py_CLEAR(self->bounds);
    Py_CLEAR(self->exemplars);
    return 0;
}

static void hist_dealloc(HistObject *self) {
    PyObject_GC_UnTrack(self);
    hist_clear(self);
    PyMem_Free(self->limits);
    PyMem_Free(self->counts);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject HistType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "otel_asgi_kit_accel._core.HistogramBase",
    .tp_basicsize = sizeof(HistObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)hist_init,
    .tp_dealloc = (destructor)hist_dealloc,
    .tp_traverse = (traverseproc)hist_traverse,
    .tp_clear = (inquiry)hist_clear,
    .tp_members = hist_members,
    .tp_getset = hist_getset,
    .tp_methods = hist_methods,
    .tp_doc = "Histogram(bounds): recording in C; the kit's subclass adds the readout.",
};

static PyObject *s__active, *s__series, *s__new_series, *s_duration, *s_response_size, *s_request_size, *s_record,
    *s_record_sampled, *one, *minus_one;

/* metrics._active[key] += delta (from 0), as HttpServerMetrics does */
static int count_active(PyObject *metrics, PyObject *key, PyObject *delta) {
    PyObject *active = PyObject_GetAttr(metrics, s__active);
    if (active == NULL) return -1;
    int err = -1;
    if (PyDict_Check(active)) {
        PyObject *old = PyDict_GetItemWithError(active, key); /* borrowed */
        if (old != NULL || !PyErr_Occurred()) {
            PyObject *new = old != NULL ? PyNumber_Add(old, delta) : Py_NewRef(delta);
            if (new != NULL) {
                err = PyDict_SetItem(active, key, new);
                Py_DECREF(new);
            }
        }
    } else {
        PyErr_SetString(PyExc_TypeError, "HttpServerMetrics._active is not a dict");
    }
    Py_DECREF(active);
    return err;
}

static int record_in(PyObject *series, PyObject *name, PyObject *value, PyObject *context, PyObject *end_ns) {
    PyObject *histogram = PyObject_GetAttr(series, name);
    if (histogram == NULL) return -1;
    int err;
    if (PyObject_TypeCheck(histogram, &HistType)) {
        err = hist_add((HistObject *)histogram, value, context, end_ns);
    } else {
        PyObject *done = context == NULL
                             ? PyObject_CallMethodOneArg(histogram, s_record, value)
                             : PyObject_CallMethodObjArgs(histogram, s_record_sampled, value, context, end_ns, NULL);
        err = done == NULL ? -1 : 0;
        Py_XDECREF(done);
    }
    Py_DECREF(histogram);
    return err;
}

/* HttpServerMetrics.request_finished, as the Python method does it. */
static int metrics_finished(PyObject *metrics, PyObject *key, PyObject *elapsed, PyObject *request_bytes,
                            PyObject *response_bytes, PyObject *active_key, PyObject *sampled, PyObject *end_ns) {
    if (count_active(metrics, active_key, minus_one)) return -1;
    PyObject *all = PyObject_GetAttr(metrics, s__series);
    if (all == NULL) return -1;
    PyObject *series = PyDict_Check(all) ? PyDict_GetItemWithError(all, key) : NULL;
    Py_XINCREF(series);
    Py_DECREF(all);
    if (series == NULL) {
        if (PyErr_Occurred()) return -1;
        series = PyObject_CallMethodOneArg(metrics, s__new_series, key);
        if (series == NULL) return -1;
    }
    int err = record_in(series, s_duration, elapsed, sampled == Py_None ? NULL : sampled, end_ns) ||
              record_in(series, s_response_size, response_bytes, NULL, NULL) ||
              (request_bytes != Py_None && record_in(series, s_request_size, request_bytes, NULL, NULL));
    Py_DECREF(series);
    return err ? -1 : 0;
}

static PyObject *decode_latin1(PyObject *value) {
    if (PyBytes_Check(value)) return PyUnicode_DecodeLatin1(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), NULL);
    return PyObject_CallMethod(value, "decode", "s", "latin-1");
}

static int set_item(PyObject *dict, PyObject *key, PyObject *value) { return value == NULL ? -1 : PyDict_SetItem(dict, key, value); }

/* The pair (name, value) of one header; borrowed references; 0 if it is not a 2-tuple or 2-list. */
static int header_pair(PyObject *pair, PyObject **name, PyObject **value) {
    if (PyTuple_Check(pair) && PyTuple_GET_SIZE(pair) == 2) {
        *name = PyTuple_GET_ITEM(pair, 0);
        *value = PyTuple_GET_ITEM(pair, 1);
        return 1;
    }
    if (PyList_Check(pair) && PyList_GET_SIZE(pair) == 2) {
        *name = PyList_GET_ITEM(pair, 0);
        *value = PyList_GET_ITEM(pair, 1);
        return 1;
    }
    return 0;
}

static RequestObject *new_request(CoreObject *core) {
    PyTypeObject *type = (PyTypeObject *)core->request_type;
    RequestObject *r = (RequestObject *)type->tp_alloc(type, 0);
    if (r == NULL) return NULL;
    r->core = (CoreObject *)Py_NewRef((PyObject *)core);
    r->inst = Py_NewRef(core->inst);
    r->span = Py_NewRef(Py_None);
    r->token = Py_NewRef(Py_None);
    r->task = Py_NewRef(Py_None);
    r->method = Py_NewRef(Py_None);
    r->scheme = Py_NewRef(Py_None);
    r->request_bytes = Py_NewRef(Py_None);
    r->server_send = Py_NewRef(Py_None);
    r->peer = Py_NewRef(Py_None);
    r->response_headers = Py_NewRef(Py_None);
    return r;
}

/* otel_asgi_kit.sdk.current's _fast_attach and _fast_detach, registered by fast_context with what they use (the
 * API's context variable, its span key, its Context type) after that module checked them against the public API;
 * a Core whose attach or detach is one of them gets it done here. */
static PyObject *fast_attach_function = NULL, *fast_detach_function = NULL, *context_var = NULL, *span_key = NULL,
                *context_type = NULL;

/* fast_context(attach, detach, var, key, context_type), or fast_context(None, None, None, None, None) */
static PyObject *module_fast_context(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || (args[0] != Py_None && !PyContextVar_CheckExact(args[2])) ||
        (args[0] != Py_None && !PyType_Check(args[4]))) {
        PyErr_SetString(PyExc_TypeError, "fast_context(attach, detach, var, key, context_type) or all None");
        return NULL;
    }
    int off = args[0] == Py_None;
    Py_XSETREF(fast_attach_function, off ? NULL : Py_NewRef(args[0]));
    Py_XSETREF(fast_detach_function, off ? NULL : Py_NewRef(args[1]));
    Py_XSETREF(context_var, off ? NULL : Py_NewRef(args[2]));
    Py_XSETREF(span_key, off ? NULL : Py_NewRef(args[3]));
    Py_XSETREF(context_type, off ? NULL : Py_NewRef(args[4]));
    Py_RETURN_NONE;
}

/* attach(span, parent) -> token: done here when `attach` is the registered _fast_attach (a dict parent or None) */
static PyObject *attach_span(PyObject *attach, PyObject *span, PyObject *parent) {
    if (attach == fast_attach_function && fast_attach_function != NULL && (parent == Py_None || PyDict_Check(parent))) {
        PyObject *base = parent;
        if (parent == Py_None && PyContextVar_Get(context_var, NULL, &base) < 0) return NULL;
        if (base != NULL && PyDict_Check(base)) { /* dict(current or parent), the span under the key, Context(that) */
            PyObject *values = PyDict_Copy(base);
            if (parent == Py_None) Py_DECREF(base);
            if (values == NULL) return NULL;
            PyObject *context = PyDict_SetItem(values, span_key, span) < 0 ? NULL : PyObject_CallOneArg(context_type, values);
            Py_DECREF(values);
            if (context == NULL) return NULL;
            PyObject *token = PyContextVar_Set(context_var, context);
            Py_DECREF(context);
            return token;
        }
        if (parent == Py_None) Py_XDECREF(base);
    }
    PyObject *attach_args[2] = {span, parent};
    return PyObject_Vectorcall(attach, attach_args, 2, NULL);
}

/* detach(token): done here when `detach` is the registered _fast_detach and the variable takes the token back */
static PyObject *detach_token(PyObject *detach, PyObject *token) {
    if (detach == fast_detach_function && fast_detach_function != NULL && PyContextToken_CheckExact(token)) {
        if (PyContextVar_Reset(context_var, token) == 0) Py_RETURN_NONE;
        PyErr_Clear(); /* a token of another context: the Python function logs it, as the API's detach */
    }
    return PyObject_CallOneArg(detach, token);
}

/* Core.start(scope, send) -> request: the Python adapter's _start and ServerRequest.__init__. */
/* The Python adapter runs the app uninstrumented after a failed start: no context of ours may stay attached. */
static void undo_begin(CoreObject *self, RequestObject *request) {
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    if (request->task != Py_None && PyDict_Check(self->active) && PyDict_DelItem(self->active, request->task) < 0)
        PyErr_Clear();
    PyObject *undone = detach_token(self->detach, request->token);
    if (undone == NULL) PyErr_Clear();
    Py_XDECREF(undone);
    PyErr_Restore(type, value, traceback);
}

/* The request's span (named after its method, with `attributes`, taken over), its context attached, the active
 * table, the in-progress count and the clock, as ServerRequest does; request->method and ->scheme are set.
 * On failure nothing stays attached. */
static int begin(CoreObject *self, RequestObject *request, PyObject *attributes, PyObject *parent) {
    PyObject *span_name = request->method == s_OTHER ? s_HTTP : request->method;
    PyObject *span;
    if (parent == Py_None && self->make_root != Py_None) {
        PyObject *make_args[2] = {span_name, attributes};
        span = PyObject_Vectorcall(self->make_root, make_args, 2, NULL);
    } else {
        PyObject *start_args[3] = {span_name, parent, attributes};
        span = PyObject_Vectorcall(self->start_span, start_args, 3, NULL);
    }
    Py_DECREF(attributes); /* the span took it over */
    if (span == NULL) return -1;
    Py_SETREF(request->span, span);
    PyObject *token = attach_span(self->attach, span, parent);
    if (token == NULL) return -1;
    Py_SETREF(request->token, token);
    /* core.active.enter: the running task (none without a running loop) -> this span */
    PyObject *task = PyObject_CallNoArgs(self->current_task);
    if (task == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_RuntimeError)) goto undo;
        PyErr_Clear();
        task = Py_NewRef(Py_None);
    }
    Py_SETREF(request->task, task);
    if (task != Py_None && PyDict_SetItem(self->active, task, span)) goto undo;
    if (self->metrics != Py_None) {
        PyObject *active_key = PyTuple_Pack(2, request->method, request->scheme);
        if (active_key == NULL) goto undo;
        int err = count_active(self->metrics, active_key, one);
        Py_DECREF(active_key);
        if (err) goto undo;
    }
    PyObject *t0 = now(self->perf_counter);
    if (t0 == NULL) goto undo;
    request->start = PyFloat_AsDouble(t0);
    Py_DECREF(t0);
    if (request->start == -1.0 && PyErr_Occurred()) goto undo;
    return 0;
undo:
    undo_begin(self, request);
    return -1;
}

/* start_request(raw_method, scheme, path, query, parent, user_agent, http_version, request_bytes, peer) -> request:
 * ServerRequest(...) for an adapter that read the request itself (aiohttp): the same attributes from the same
 * values (query: str, redacted when not empty; user_agent: str or None), the span started, its context attached. */
static PyObject *core_start_request(CoreObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError,
                        "start_request(raw_method, scheme, path, query, parent, user_agent, http_version, "
                        "request_bytes, peer)");
        return NULL;
    }
    PyObject *raw_method = args[0], *scheme = args[1], *path = args[2], *query = args[3], *parent = args[4];
    PyObject *user_agent = args[5], *version = args[6], *request_bytes = args[7], *peer = args[8];
    PyObject *method = PyDict_GetItemWithError(self->methods, raw_method); /* borrowed */
    if (method == NULL) {
        if (PyErr_Occurred()) return NULL;
        method = s_OTHER;
    }
    PyObject *attributes = PyDict_New();
    if (attributes == NULL) return NULL;
    if (PyDict_SetItem(attributes, s_k_method, method) || PyDict_SetItem(attributes, s_k_path, path) ||
        PyDict_SetItem(attributes, s_k_scheme, scheme))
        goto fail;
    int truth = PyObject_IsTrue(query);
    if (truth < 0) goto fail;
    if (truth) {
        PyObject *redacted = PyObject_CallOneArg(self->redact, query);
        int err = set_item(attributes, s_k_query, redacted);
        Py_XDECREF(redacted);
        if (err) goto fail;
    }
    if (method == s_OTHER) {
        PyObject *text = PyObject_Str(raw_method);
        if (text == NULL) goto fail;
        PyObject *cut = PySequence_GetSlice(text, 0, 32);
        Py_DECREF(text);
        int err = set_item(attributes, s_k_method_original, cut);
        Py_XDECREF(cut);
        if (err) goto fail;
    }
    if (user_agent != Py_None && PyDict_SetItem(attributes, s_k_user_agent, user_agent)) goto fail;
    if ((truth = PyObject_IsTrue(version)) < 0) goto fail;
    if (truth && PyDict_SetItem(attributes, s_k_version, version)) goto fail;
    RequestObject *request = new_request(self);
    if (request == NULL) goto fail;
    Py_SETREF(request->method, Py_NewRef(method));
    Py_SETREF(request->scheme, Py_NewRef(scheme));
    Py_SETREF(request->request_bytes, Py_NewRef(request_bytes));
    Py_SETREF(request->peer, Py_NewRef(peer));
    if (begin(self, request, attributes, parent) < 0) {
        Py_DECREF(request);
        return NULL;
    }
    return (PyObject *)request;
fail:
    Py_DECREF(attributes);
    return NULL;
}

static PyObject *core_start(CoreObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "start(scope, send)");
        return NULL;
    }
    PyObject *scope = args[0], *send = args[1];
    if (!PyDict_Check(scope)) Py_RETURN_NONE; /* ASGI scopes are dicts; anything else: the Python path */
    PyObject *attributes = NULL, *parent = NULL, *user_agent = NULL, *request_bytes = NULL, *iter = NULL, *pair = NULL;
    RequestObject *request = NULL;
    int attached = 0;

    /* 1. Everything read from the scope, before any side effect. */
    PyObject *headers = scope_get(scope, s_headers);
    if (headers == NULL && PyErr_Occurred()) return NULL;
    int propagated = 0;
    if (headers != NULL) {
        int truth = PyObject_IsTrue(headers);
        if (truth < 0) return NULL;
        if (!truth) headers = NULL;
    }
    if (headers != NULL) {
        iter = PyObject_GetIter(headers);
        if (iter == NULL) goto fail;
        while ((pair = PyIter_Next(iter)) != NULL) {
            PyObject *name, *value;
            if (!header_pair(pair, &name, &value)) {
                PyErr_SetString(PyExc_ValueError, "a header is not a (name, value) pair");
                goto fail;
            }
            int hit = PySet_Contains(self->fields, name);
            if (hit < 0) goto fail;
            if (hit) {
                propagated = 1;
            } else {
                int eq = PyObject_RichCompareBool(name, s_user_agent_name, Py_EQ);
                if (eq < 0) goto fail;
                if (eq) {
                    Py_XSETREF(user_agent, Py_NewRef(value));
                } else {
                    eq = PyObject_RichCompareBool(name, s_content_length_name, Py_EQ);
                    if (eq < 0) goto fail;
                    if (eq) {
                        PyObject *number = NULL;
                        if (PyBytes_Check(value)) {
                            if (all_digits(value)) {
                                number = PyLong_FromString(PyBytes_AS_STRING(value), NULL, 10);
                                if (number == NULL) goto fail;
                            }
                        } else { /* as Python: value.isdigit() and int(value) */
                            PyObject *digits = PyObject_CallMethod(value, "isdigit", NULL);
                            if (digits == NULL) goto fail;
                            int truth = PyObject_IsTrue(digits);
                            Py_DECREF(digits);
                            if (truth < 0) goto fail;
                            if (truth && (number = PyNumber_Long(value)) == NULL) goto fail;
                        }
                        if (number != NULL) Py_XSETREF(request_bytes, number);
                    }
                }
            }
            Py_CLEAR(pair);
        }
        Py_CLEAR(iter);
        if (PyErr_Occurred()) goto fail;
    }
    PyObject *raw_method = scope_get(scope, s_method);
    if (raw_method == NULL) {
        if (PyErr_Occurred()) goto fail;
        raw_method = s_GET;
    }
    PyObject *method = PyDict_GetItemWithError(self->methods, raw_method); /* borrowed */
    if (method == NULL) {
        if (PyErr_Occurred()) goto fail;
        method = s_OTHER;
    }
    PyObject *scheme = scope_get(scope, s_scheme);
    if (scheme == NULL) {
        if (PyErr_Occurred()) goto fail;
        scheme = s_http;
    }
    PyObject *path = scope_get(scope, s_path);
    if (path == NULL) {
        if (PyErr_Occurred()) goto fail;
        path = s_empty;
    }
    attributes = PyDict_New();
    if (attributes == NULL || PyDict_SetItem(attributes, s_k_method, method) ||
        PyDict_SetItem(attributes, s_k_path, path) || PyDict_SetItem(attributes, s_k_scheme, scheme))
        goto fail;
    PyObject *raw_query = scope_get(scope, s_query_string);
    if (raw_query == NULL && PyErr_Occurred()) goto fail;
    if (raw_query != NULL) {
        int truth = PyObject_IsTrue(raw_query);
        if (truth < 0) goto fail;
        if (truth) {
            PyObject *text = decode_latin1(raw_query);
            if (text == NULL) goto fail;
            PyObject *redacted = PyObject_CallOneArg(self->redact, text);
            Py_DECREF(text);
            int err = set_item(attributes, s_k_query, redacted);
            Py_XDECREF(redacted);
            if (err) goto fail;
        }
    }
    if (method == s_OTHER) {
        PyObject *text = PyObject_Str(raw_method);
        if (text == NULL) goto fail;
        PyObject *cut = PySequence_GetSlice(text, 0, 32);
        Py_DECREF(text);
        int err = set_item(attributes, s_k_method_original, cut);
        Py_XDECREF(cut);
        if (err) goto fail;
    }
    if (user_agent != NULL) {
        PyObject *text = decode_latin1(user_agent);
        int err = set_item(attributes, s_k_user_agent, text);
        Py_XDECREF(text);
        if (err) goto fail;
    }
    PyObject *version = scope_get(scope, s_http_version);
    if (version == NULL && PyErr_Occurred()) goto fail;
    if (version != NULL) {
        int truth = PyObject_IsTrue(version);
        if (truth < 0) goto fail;
        if (truth && PyDict_SetItem(attributes, s_k_version, version)) goto fail;
    }
    request = new_request(self);
    if (request == NULL) goto fail;
    PyObject *client = scope_get(scope, s_client);
    if (client == NULL && PyErr_Occurred()) goto fail;
    if (client != NULL) {
        int truth = PyObject_IsTrue(client);
        if (truth < 0) goto fail;
        if (truth) {
            PyObject *peer = PySequence_GetItem(client, 0);
            if (peer == NULL) goto fail;
            Py_SETREF(request->peer, peer);
        }
    }
    if (propagated) {
        parent = PyObject_CallOneArg(self->extract, headers);
        if (parent == NULL) goto fail;
    } else {
        parent = Py_NewRef(Py_None);
    }
    Py_SETREF(request->method, Py_NewRef(method));
    Py_SETREF(request->scheme, Py_NewRef(scheme));
    if (request_bytes != NULL) {
        Py_SETREF(request->request_bytes, request_bytes);
        request_bytes = NULL;
    }
    Py_SETREF(request->server_send, Py_NewRef(send));

    /* 2. The span, its context, the active table, the in-progress count, the clock: as in Python. */
    PyObject *taken = attributes;
    attributes = NULL;
    if (begin(self, request, taken, parent) < 0) goto fail;
    attached = 1;
    PyObject *span = request->span;
    if (PyObject_SetItem(scope, self->span_key, span)) goto fail;
    Py_DECREF(parent);
    Py_XDECREF(user_agent);
    return (PyObject *)request;

fail:
    if (attached) undo_begin(self, request);
    Py_XDECREF(pair);
    Py_XDECREF(iter);
    Py_XDECREF(attributes);
    Py_XDECREF(parent);
    Py_XDECREF(user_agent);
    Py_XDECREF(request_bytes);
    Py_XDECREF((PyObject *)request);
    return NULL;
}

/* ------------------------------------------------------------------------------------------------ */

static int put_hex(char *out, PyObject *number, int digits) {
    /* number (a non-negative int below 16**digits) as lowercase hex, zero-padded to digits */
    static const char hex[] = "0123456789abcdef";
    PyObject *n = Py_NewRef(number);
    for (int chunk = digits; chunk > 0; chunk -= 16) {
        unsigned long long low = PyLong_AsUnsignedLongLongMask(n);
        if (low == (unsigned long long)-1 && PyErr_Occurred()) {
            Py_DECREF(n);
            return -1;
        }
        int width = chunk < 16 ? chunk : 16;
        for (int i = 0; i < width; i++) {
            out[chunk - 1 - i] = hex[low & 0xF];
            low >>= 4;
        }
        if (chunk > 16) {
            PyObject *shift = PyLong_FromLong(64);
            PyObject *rest = shift ? PyNumber_Rshift(n, shift) : NULL;
            Py_XDECREF(shift);
            Py_DECREF(n);
            if (rest == NULL) return -1;
            n = rest;
        }
    }
    Py_DECREF(n);
    return 0;
}

#if PY_VERSION_HEX < 0x030C0000 /* 3.10, 3.11: the raised-exception API of 3.12 */
static PyObject *PyErr_GetRaisedException(void) {
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    if (type == NULL) return NULL;
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL) PyException_SetTraceback(value, traceback);
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    return value;
}

static void PyErr_SetRaisedException(PyObject *exc) {
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
}
#endif

/* The span type whose get_span_context() returns its `_context` field (set by fast_span_context, after the kit
 * checked that on a span of that type); NULL: every span is asked. */
static PyTypeObject *context_field_type = NULL;
static PyObject *s__context; /* interned with the RootMaker's names below */

/* span.get_span_context(), new reference: read from the field for context_field_type, else called. */
static PyObject *span_context(PyObject *span) {
    if (context_field_type != NULL && Py_TYPE(span) == context_field_type) {
        PyObject *fields = PyObject_GenericGetDict(span, NULL);
        if (fields == NULL) return NULL;
        PyObject *ctx = PyDict_GetItemWithError(fields, s__context);
        Py_XINCREF(ctx);
        Py_DECREF(fields);
        if (ctx != NULL || PyErr_Occurred()) return ctx;
    }
    return PyObject_CallMethodNoArgs(span, s_get_span_context);
}

/* fast_span_context(type or None) */
static PyObject *module_fast_span_context(PyObject *module, PyObject *type) {
    if (type != Py_None && !PyType_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "fast_span_context(type or None)");
        return NULL;
    }
    Py_XSETREF(context_field_type, type == Py_None ? NULL : (PyTypeObject *)Py_NewRef(type));
    Py_RETURN_NONE;
}

static PyObject *s__lock, *s__attributes, *s__dict, *s__end_time, *s__name, *s_acquire, *s_release; /* see below */

/* lock.release() after work done under it: 0, or -1 with an exception set (one raised under the lock is kept,
 * unless the release itself fails). */
static int release_lock(PyObject *lock) {
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *released = PyObject_CallMethodNoArgs(lock, s_release);
    if (released == NULL) {
        Py_XDECREF(exc);
        return -1;
    }
    Py_DECREF(released);
    if (exc != NULL) {
        PyErr_SetRaisedException(exc);
        return -1;
    }
    return 0;
}

/* ServerSpan.set_kit_attributes, set by fast_kit_attributes (NULL: always called). */
static PyObject *kit_attributes_method = NULL;

/* fast_kit_attributes(function or None) */
static PyObject *module_fast_kit_attributes(PyObject *module, PyObject *function) {
    Py_XSETREF(kit_attributes_method, function == Py_None ? NULL : Py_NewRef(function));
    Py_RETURN_NONE;
}

/* That method's body on the span's fields: under the span's lock, unless the span ended, its attributes' plain
 * dict updated and its name set. 1: done; 0: fields laid out otherwise (nothing changed); -1: an error. */
static int kit_attributes_on_fields(PyObject *span, PyObject *attributes, PyObject *name) {
    PyObject *fields = PyObject_GenericGetDict(span, NULL);
    if (fields == NULL) return -1;
    PyObject *lock = PyDict_GetItemWithError(fields, s__lock);
    PyObject *bounded = lock == NULL ? NULL : PyDict_GetItemWithError(fields, s__attributes);
    PyObject *values = bounded == NULL ? NULL : PyObject_GetAttr(bounded, s__dict);
    if (values == NULL || !PyDict_CheckExact(values)) {
        Py_XDECREF(values);
        Py_DECREF(fields);
        if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_AttributeError)) return -1;
        PyErr_Clear();
        return 0;
    }
    Py_INCREF(lock);
    PyObject *got = PyObject_CallMethodNoArgs(lock, s_acquire);
    if (got == NULL) {
        Py_DECREF(lock);
        Py_DECREF(values);
        Py_DECREF(fields);
        return -1;
    }
    Py_DECREF(got);
    int err = 0;
    PyObject *end = PyDict_GetItemWithError(fields, s__end_time);
    if (end == NULL && PyErr_Occurred())
        err = 1;
    else if (end == Py_None)
        err = PyDict_Update(values, attributes) < 0 || (name != Py_None && PyDict_SetItem(fields, s__name, name) < 0);
    int released = release_lock(lock);
    Py_DECREF(lock);
    Py_DECREF(values);
    Py_DECREF(fields);
    return released < 0 || err ? -1 : 1;
}

/* span.set_kit_attributes(attributes, name): on the fields when the span's type has the registered method. */
static int set_kit_attributes(PyObject *span, PyObject *attributes, PyObject *name) {
    if (kit_attributes_method != NULL) {
        PyObject *method = PyObject_GetAttr((PyObject *)Py_TYPE(span), s_set_kit_attributes);
        if (method == NULL) return -1;
        int same = method == kit_attributes_method;
        Py_DECREF(method);
        int done = same ? kit_attributes_on_fields(span, attributes, name) : 0;
        if (done != 0) return done < 0 ? -1 : 0;
    }
    PyObject *set_args[3] = {span, attributes, name};
    PyObject *result =
        PyObject_VectorcallMethod(s_set_kit_attributes, set_args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_XDECREF(result);
    return result == NULL ? -1 : 0;
}

/* The W3C traceresponse value "00-<trace id>-<span id>-<flags>" of a SpanContext (a 6-tuple). */
static PyObject *trace_header_value(PyObject *span) {
    PyObject *ctx = span_context(span);
    if (ctx == NULL) return NULL;
    if (!PyTuple_Check(ctx) || PyTuple_GET_SIZE(ctx) < 4) {
        Py_DECREF(ctx);
        PyErr_SetString(PyExc_TypeError, "a span context that is not a tuple");
        return NULL;
    }
    char buf[55];
    memcpy(buf, "00-", 3);
    buf[35] = '-';
    buf[52] = '-';
    long flags = PyLong_AsLong(PyTuple_GET_ITEM(ctx, 3));
    if ((flags == -1 && PyErr_Occurred()) || put_hex(buf + 3, PyTuple_GET_ITEM(ctx, 0), 32) ||
        put_hex(buf + 36, PyTuple_GET_ITEM(ctx, 1), 16)) {
        Py_DECREF(ctx);
        return NULL;
    }
    Py_DECREF(ctx);
    static const char hex[] = "0123456789abcdef";
    buf[53] = hex[(flags >> 4) & 0xF];
    buf[54] = hex[flags & 0xF];
    return PyBytes_FromStringAndSize(buf, 55);
}

static PyObject *module_trace_header_value(PyObject *module, PyObject *span) { return trace_header_value(span); }

/* request(message): the app's send. */
static PyObject *request_call(RequestObject *self, PyObject *args, PyObject *kwargs) {
    PyObject *message;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs)) {
        PyErr_SetString(PyExc_TypeError, "send(message) takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "send", 1, 1, &message)) return NULL;
    if (!PyDict_Check(message)) goto pass; /* not an ASGI message (a dict): the server says what is wrong */
    PyObject *kind = PyDict_GetItemWithError(message, s_type);
    if (kind == NULL) {
        if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, s_type); /* as message["type"] */
        return NULL;
    }
    int is_body = PyUnicode_Check(kind) && PyUnicode_Compare(kind, s_t_body) == 0;
    if (is_body) {
        PyObject *body = PyDict_GetItemWithError(message, s_body);
        if (body == NULL && PyErr_Occurred()) return NULL;
        if (body != NULL) {
            Py_ssize_t n = PyObject_Length(body);
            if (n < 0) return NULL;
            self->response_bytes += n;
        }
        PyObject *more = PyDict_GetItemWithError(message, s_more_body);
        if (more == NULL && PyErr_Occurred()) return NULL;
        int truth = more == NULL ? 0 : PyObject_IsTrue(more);
        if (truth < 0) return NULL;
        if (!truth) {
            PyObject *last_args[2] = {(PyObject *)self, message};
            return PyObject_Vectorcall(self->core->send_last, last_args, 2, NULL);
        }
        goto pass;
    }
    if (PyUnicode_Check(kind) && PyUnicode_Compare(kind, s_t_start) == 0) {
        PyObject *status = PyDict_GetItemWithError(message, s_status_key);
        if (status == NULL) {
            if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, s_status_key);
            return NULL;
        }
        long value = PyLong_Check(status) ? PyLong_AsLong(status) : -1;
        if (value == -1 && PyErr_Occurred()) PyErr_Clear();
        /* Not an int the server can send: the server says so; the request counts as unanswered. */
        self->status = (value < 0 || value > 0x7FFFFFFF) ? 0 : (int)value;
        if (self->core->trace_header != Py_None) {
            PyObject *old = PyDict_GetItemWithError(message, s_headers);
            if (old == NULL && PyErr_Occurred()) return NULL;
            /* A new list: the app may reuse its own (e.g. a module-level Response). */
            PyObject *headers = old == NULL ? PyList_New(0) : PySequence_List(old);
            if (headers == NULL) return NULL;
            PyObject *value_bytes = trace_header_value(self->span);
            PyObject *pair = value_bytes ? PyTuple_Pack(2, self->core->trace_header, value_bytes) : NULL;
            Py_XDECREF(value_bytes);
            if (pair == NULL || PyList_Append(headers, pair) || PyDict_SetItem(message, s_headers, headers)) {
                Py_XDECREF(pair);
                Py_DECREF(headers);
                return NULL;
            }
            Py_DECREF(pair);
            Py_DECREF(headers);
        }
        goto pass;
    }
    if (PyUnicode_Check(kind) && PyUnicode_Compare(kind, s_t_pathsend) == 0) {
        PyObject *last_args[2] = {(PyObject *)self, message};
        return PyObject_Vectorcall(self->core->send_last, last_args, 2, NULL);
    }
pass:
    return PyObject_CallOneArg(self->server_send, message);
}

static int mark_complete(RequestObject *self) {
    if (self->done_at != 0.0) return 0;
    PyObject *t = now(self->core->perf_counter);
    if (t == NULL) return -1;
    double at = PyFloat_AsDouble(t);
    Py_DECREF(t);
    if (at == -1.0 && PyErr_Occurred()) return -1;
    PyObject *ns = now(self->core->time_ns);
    if (ns == NULL) return -1;
    long long done_ns = PyLong_AsLongLong(ns);
    Py_DECREF(ns);
    if (done_ns == -1 && PyErr_Occurred()) return -1;
    self->done_at = at;
    self->done_ns = done_ns;
    return 0;
}

static PyObject *request_response_complete(RequestObject *self, PyObject *unused) {
    if (mark_complete(self)) return NULL;
    Py_RETURN_NONE;
}

/* finish_common(route, client, scheme, background) -> bool */
static PyObject *request_finish_common(RequestObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "finish_common(route, client, scheme, background)");
        return NULL;
    }
    PyObject *route = args[0], *client = args[1], *scheme = args[2];
    int background = PyObject_IsTrue(args[3]);
    if (background < 0) return NULL;
    int status = self->status;
    CoreObject *core = self->core;
    if (!status || self->done_at == 0.0 || status >= 500 || status == 401 || status == 403 ||
        Py_TYPE(self->span) != (PyTypeObject *)core->span_type || (route != Py_None && !PyUnicode_Check(route)) ||
        !PyUnicode_Check(self->method))
        Py_RETURN_FALSE;
    PyObject *t = now(core->perf_counter);
    if (t == NULL) return NULL;
    double at = PyFloat_AsDouble(t);
    Py_DECREF(t);
    if (at == -1.0 && PyErr_Occurred()) return NULL;
    if (background && at - self->done_at >= core->background_min) Py_RETURN_FALSE; /* a background span: Python */

    /* From here on: this request is recorded here, and any failure is reported, not retried. */
    PyObject *attributes = PyDict_New(), *name = NULL, *status_obj = NULL, *result = NULL, *elapsed = NULL,
             *key = NULL, *active_key = NULL, *sampled = NULL, *done_ns = NULL;
    if (attributes == NULL) return NULL;
    if (route != Py_None) {
        name = PyUnicode_FromFormat("%U %U", self->method == s_OTHER ? s_HTTP : self->method, route);
        if (name == NULL || PyDict_SetItem(attributes, s_k_route, route)) goto done;
    }
    status_obj = PyLong_FromLong(status);
    if (status_obj == NULL || PyDict_SetItem(attributes, s_k_status, status_obj)) goto done;
    if (client != Py_None) {
        int truth = PyObject_IsTrue(client);
        if (truth < 0 || (truth && PyDict_SetItem(attributes, s_k_client, client))) goto done;
    }
    if (set_kit_attributes(self->span, attributes, name ? name : Py_None) < 0) goto done;
    done_ns = PyLong_FromLongLong(self->done_ns);
    if (done_ns == NULL) goto done;
    PyObject *end_args[3] = {NULL, self->span, done_ns};
    result = core->end_span != Py_None
                 ? PyObject_Vectorcall(core->end_span, end_args + 1, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL)
                 : PyObject_VectorcallMethod(s_end, end_args + 1, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (result == NULL) goto done;
    Py_CLEAR(result);
    if (self->task != Py_None && PyDict_Check(core->active)) {
        if (PyDict_DelItem(core->active, self->task) < 0) {
            if (!PyErr_ExceptionMatches(PyExc_KeyError)) goto done;
            PyErr_Clear();
        }
    }
    result = detach_token(core->detach, self->token);
    if (result == NULL) goto done;
    Py_CLEAR(result);
    if (core->metrics != Py_None) {
        PyObject *ctx = span_context(self->span);
        if (ctx == NULL) goto done;
        long flags = (PyTuple_Check(ctx) && PyTuple_GET_SIZE(ctx) >= 4) ? PyLong_AsLong(PyTuple_GET_ITEM(ctx, 3)) : 0;
        if (flags == -1 && PyErr_Occurred()) {
            Py_DECREF(ctx);
            goto done;
        }
        if (flags & 1) {
            sampled = ctx;
        } else {
            Py_DECREF(ctx);
            sampled = Py_NewRef(Py_None);
        }
        if (sampled != Py_None && core->decisions != Py_None && PyDict_Check(core->decisions)) {
            /* tail sampling dropped this trace: no exemplar may point at it */
            PyObject *kept = PyDict_GetItemWithError(core->decisions, PyTuple_GET_ITEM(sampled, 0));
            if (kept == NULL && PyErr_Occurred()) goto done;
            if (kept == Py_False) Py_SETREF(sampled, Py_NewRef(Py_None));
        }
        int has_scheme = PyObject_IsTrue(scheme);
        if (has_scheme < 0) goto done;
        key = PyTuple_Pack(5, self->method, route, status_obj, Py_None, has_scheme ? scheme : self->scheme);
        active_key = PyTuple_Pack(2, self->method, self->scheme);
        elapsed = PyFloat_FromDouble(self->done_at - self->start);
        if (key == NULL || active_key == NULL || elapsed == NULL) goto done;
        PyObject *response_bytes = PyLong_FromLongLong(self->response_bytes);
        if (response_bytes == NULL) goto done;
        int err = metrics_finished(core->metrics, key, elapsed, self->request_bytes, response_bytes, active_key, sampled,
                                   done_ns);
        Py_DECREF(response_bytes);
        if (err) goto done;
    }
    result = Py_NewRef(Py_True);
done:
    Py_XDECREF(attributes);
    Py_XDECREF(name);
    Py_XDECREF(status_obj);
    Py_XDECREF(elapsed);
    Py_XDECREF(key);
    Py_XDECREF(active_key);
    Py_XDECREF(sampled);
    Py_XDECREF(done_ns);
    return result;
}

/* ------------------------------------------------------------------------------------------------ */

static int request_traverse(RequestObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->core);
    Py_VISIT(self->inst);
    Py_VISIT(self->span);
    Py_VISIT(self->token);
    Py_VISIT(self->task);
    Py_VISIT(self->method);
    Py_VISIT(self->scheme);
    Py_VISIT(self->request_bytes);
    Py_VISIT(self->server_send);
    Py_VISIT(self->peer);
    Py_VISIT(self->response_headers);
    return 0;
}

static int request_clear(RequestObject *self) {
    Py_CLEAR(self->core);
    Py_CLEAR(self->inst);
    Py_CLEAR(self->span);
    Py_CLEAR(self->token);
    Py_CLEAR(self->task);
    Py_CLEAR(self->method);
    Py_CLEAR(self->scheme);
    Py_CLEAR(self->request_bytes);
    Py_CLEAR(self->server_send);
    Py_CLEAR(self->peer);
    Py_CLEAR(self->response_headers);
    return 0;
}

static void request_dealloc(RequestObject *self) {
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    request_clear(self);
    type->tp_free((PyObject *)self); /* a heap subtype's own dealloc releases the type */
}

static PyObject *request_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyErr_SetString(PyExc_TypeError, "requests are made by Core.start()");
    return NULL;
}

static PyMemberDef request_members[] = {
    {"inst", T_OBJECT, offsetof(RequestObject, inst), READONLY, NULL},
    {"span", T_OBJECT, offsetof(RequestObject, span), READONLY, NULL},
    {"token", T_OBJECT, offsetof(RequestObject, token), READONLY, NULL},
    {"task", T_OBJECT, offsetof(RequestObject, task), READONLY, NULL},
    {"method", T_OBJECT, offsetof(RequestObject, method), READONLY, NULL},
    {"scheme", T_OBJECT, offsetof(RequestObject, scheme), READONLY, NULL},
    {"request_bytes", T_OBJECT, offsetof(RequestObject, request_bytes), READONLY, NULL},
    {"server_send", T_OBJECT, offsetof(RequestObject, server_send), READONLY, NULL},
    {"peer", T_OBJECT, offsetof(RequestObject, peer), READONLY, NULL},
    {"response_headers", T_OBJECT, offsetof(RequestObject, response_headers), READONLY, NULL},
    {"status", T_INT, offsetof(RequestObject, status), 0, NULL},
    {"response_bytes", T_LONGLONG, offsetof(RequestObject, response_bytes), 0, NULL},
    {"done_ns", T_LONGLONG, offsetof(RequestObject, done_ns), 0, NULL},
    {"start", T_DOUBLE, offsetof(RequestObject, start), 0, NULL},
    {"done_at", T_DOUBLE, offsetof(RequestObject, done_at), 0, NULL},
    {NULL},
};

/* The Python RequestLogic's trace_header and response_started, without a Python call each. */
static PyObject *request_trace_header(RequestObject *self, PyObject *unused) { return trace_header_value(self->span); }

static PyObject *request_response_started(RequestObject *self, PyObject *status) {
    long value = PyLong_AsLong(status);
    if (value == -1 && PyErr_Occurred()) return NULL;
    self->status = (value < 0 || value > 0x7FFFFFFF) ? 0 : (int)value;
    Py_RETURN_NONE;
}

static PyMethodDef request_methods[] = {
    {"trace_header", (PyCFunction)request_trace_header, METH_NOARGS, "The traceresponse value for this request."},
    {"response_started", (PyCFunction)request_response_started, METH_O, "The response's status is known."},
    {"response_complete", (PyCFunction)request_response_complete, METH_NOARGS,
     "The last body byte was handed to the server: the request's duration ends here."},
    {"finish_common", (PyCFunction)(void (*)(void))request_finish_common, METH_FASTCALL,
     "Record a request that ended the common way; False (nothing done) for any other."},
    {NULL},
};

static PyTypeObject RequestBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "otel_asgi_kit_accel._core.RequestBase",
    .tp_basicsize = sizeof(RequestObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = request_new,
    .tp_dealloc = (destructor)request_dealloc,
    .tp_traverse = (traverseproc)request_traverse,
    .tp_clear = (inquiry)request_clear,
    .tp_call = (ternaryfunc)request_call,
    .tp_members = request_members,
    .tp_methods = request_methods,
    .tp_doc = "One request's state and the app's send (subclassed by the kit).",
};


/* ------------------------------------------------------------------------------------------------ */
/* RootMaker: ServerSpanStarter.start for a root span (no parent) with the default sampler and the SDK's
 * id generator, as otel_asgi_kit.sdk.server_span does it in Python: the ids from random.getrandbits,
 * the SpanContext tuple, the span object filled from the prototype built once by the SDK's own
 * constructor, its attribute map, and the processors' on_start. ServerSpanStarter decides whether it
 * applies (the same checks as for its own short path) and hands the fields it prepared. */

typedef struct {
    PyObject_HEAD
    PyObject *tracer;         /* the SDK tracer: its _tracer_config.is_enabled is read per span */
    PyObject *span_type, *prototype, *attributes_type, *attributes_prototype, *span_context_type, *trace_state,
        *flags, *random, *allocate_lock, *time_ns, *on_start, *multi, *quiet, *fallback;
    /* multi, quiet: on_start is skipped while multi._span_processors is quiet (a tuple of processors whose
     * on_start does nothing; None: always called) */
} MakerObject;

static PyObject *s__span_processors, *s_is_enabled, *s__tracer_config, *s_getrandbits, *s__name, *s__context, *s__parent, *s__lock, *s__attributes, *s__events, *s__links,
    *s__start_time, *s__dict, *s_parent_context, *kw_parent_context, *empty_tuple, *n128, *n64;

static PyObject *random_id(MakerObject *self, PyObject *bits) {
    for (;;) { /* as RandomIdGenerator: drawn again while zero */
        PyObject *draw = PyObject_GetAttr(self->random, s_getrandbits); /* looked up as the SDK does */
        if (draw == NULL) return NULL;
        PyObject *id = PyObject_CallOneArg(draw, bits);
        Py_DECREF(draw);
        if (id == NULL) return NULL;
        int truth = PyObject_IsTrue(id);
        if (truth < 0) {
            Py_DECREF(id);
            return NULL;
        }
        if (truth) return id;
        Py_DECREF(id);
    }
}

static PyObject *new_plain(PyObject *type) { return PyBaseObject_Type.tp_new((PyTypeObject *)type, empty_tuple, NULL); }

/* maker(name, attributes) -> span */
static PyObject *maker_call(MakerObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 2 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "maker(name, attributes)");
        return NULL;
    }
    PyObject *name = args[0], *attributes = args[1];
    PyObject *config = PyObject_GetAttr(self->tracer, s__tracer_config);
    if (config == NULL) return NULL;
    PyObject *enabled = PyObject_GetAttr(config, s_is_enabled);
    Py_DECREF(config);
    if (enabled == NULL) return NULL;
    int truth = PyObject_IsTrue(enabled);
    Py_DECREF(enabled);
    if (truth < 0) return NULL;
    if (!truth) {
        PyObject *fallback_args[3] = {name, Py_None, attributes};
        return PyObject_Vectorcall(self->fallback, fallback_args, 3, NULL);
    }
    PyObject *trace_id = NULL, *span_id = NULL, *context = NULL, *items = NULL, *span = NULL, *fields = NULL,
             *bounded = NULL, *bounded_fields = NULL, *lock = NULL, *start = NULL, *result = NULL;
    if ((trace_id = random_id(self, n128)) == NULL || (span_id = random_id(self, n64)) == NULL) goto done;
    items = PyTuple_Pack(6, trace_id, span_id, Py_False, self->flags, self->trace_state, Py_True);
    if (items == NULL) goto done;
    PyObject *new_args = PyTuple_Pack(1, items);
    if (new_args == NULL) goto done;
    context = PyTuple_Type.tp_new((PyTypeObject *)self->span_context_type, new_args, NULL);
    Py_DECREF(new_args);
    if (context == NULL) goto done;
    if ((bounded = new_plain(self->attributes_type)) == NULL) goto done;
    if ((bounded_fields = PyObject_GenericGetDict(bounded, NULL)) == NULL) goto done;
    if (PyDict_Update(bounded_fields, self->attributes_prototype) || PyDict_SetItem(bounded_fields, s__dict, attributes))
        goto done;
    if ((lock = PyObject_CallNoArgs(self->allocate_lock)) == NULL || PyDict_SetItem(bounded_fields, s__lock, lock))
        goto done;
    Py_CLEAR(lock);
    if ((span = new_plain(self->span_type)) == NULL) goto done;
    if ((fields = PyObject_GenericGetDict(span, NULL)) == NULL) goto done;
    if ((lock = PyObject_CallNoArgs(self->allocate_lock)) == NULL) goto done;
    if ((start = PyObject_CallNoArgs(self->time_ns)) == NULL) goto done;
    if (PyDict_Update(fields, self->prototype) || PyDict_SetItem(fields, s__name, name) ||
        PyDict_SetItem(fields, s__context, context) || PyDict_SetItem(fields, s__parent, Py_None) ||
        PyDict_SetItem(fields, s__lock, lock) || PyDict_SetItem(fields, s__attributes, bounded) ||
        PyDict_SetItem(fields, s__events, empty_tuple) || PyDict_SetItem(fields, s__links, empty_tuple) ||
        PyDict_SetItem(fields, s__start_time, start))
        goto done;
    int quiet = 0;
    if (self->quiet != Py_None) {
        PyObject *processors = PyObject_GetAttr(self->multi, s__span_processors);
        if (processors == NULL) goto done;
        quiet = processors == self->quiet;
        Py_DECREF(processors);
    }
    if (!quiet) {
        PyObject *start_args[3] = {span, Py_None};
        PyObject *started = PyObject_Vectorcall(self->on_start, start_args, 1, kw_parent_context);
        if (started == NULL) goto done;
        Py_DECREF(started);
    }
    result = Py_NewRef(span);
done:
    Py_XDECREF(trace_id);
    Py_XDECREF(span_id);
    Py_XDECREF(items);
    Py_XDECREF(context);
    Py_XDECREF(bounded);
    Py_XDECREF(bounded_fields);
    Py_XDECREF(lock);
    Py_XDECREF(start);
    Py_XDECREF(fields);
    Py_XDECREF(span);
    return result;
}

#define MAKER_FIELDS(X)                                                                                              \
    X(tracer) X(span_type) X(prototype) X(attributes_type) X(attributes_prototype) X(span_context_type)             \
        X(trace_state) X(flags) X(random) X(allocate_lock) X(time_ns) X(on_start) X(multi) X(quiet) X(fallback)

static int maker_init(MakerObject *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"tracer", "span_type", "prototype", "attributes_type", "attributes_prototype",
                            "span_context_type", "trace_state", "flags", "random", "allocate_lock", "time_ns",
                            "on_start", "multi", "quiet", "fallback", NULL};
    PyObject *v[15];
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_SetString(PyExc_TypeError, "RootMaker() takes keyword arguments only");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO!OO!OOOOOOOOOO", names, &v[0], &v[1], &PyDict_Type, &v[2], &v[3],
                                     &PyDict_Type, &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10], &v[11], &v[12],
                                     &v[13], &v[14]))
        return -1;
    if (!PyType_Check(v[1]) || !PyType_Check(v[3]) || !PyType_Check(v[5]) ||
        !PyType_IsSubtype((PyTypeObject *)v[5], &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "span_type and attributes_type must be types, span_context_type a tuple type");
        return -1;
    }
    int i = 0;
#define SET(f) Py_XSETREF(self->f, Py_NewRef(v[i])); i++;
    MAKER_FIELDS(SET)
#undef SET
    return 0;
}

CALLABLE_TYPE(maker, MakerObject, MAKER_FIELDS, tracer, MakerType, "RootMaker",
              "maker(name, attributes) -> a started root SERVER span (see the module's text).")



/* ------------------------------------------------------------------------------------------------ */
/* Ender: SDK Span.end for the kit's ServerSpan, and the kit's own span processors' on_end, without their
 * Python steps. otel_asgi_kit.sdk.span_end builds it only when the provider's processors are ones it knows
 * (EncodingSpanProcessor on its direct path, TraceRecorder, TailSampler around them; any other processor
 * is called as the SDK calls it) and none has an _on_ending of its own. Per span it checks that the span
 * is the kit's type, still belongs to that provider with the same processor tuple (a processor added later
 * makes a new tuple), has not ended, and has the resource and scope the encoded items' group prefix was
 * made for; otherwise, and when the span's lock is held elsewhere, span.end() runs as before.
 *
 * Steps (tuples built and checked in Python, checked again here):
 *   (0, on_end, prefix, encode, encode_python, emit, batch)   EncodingSpanProcessor.on_end; batch: the SDK's
 *       BatchProcessor whose emit this does for the common case (queue not full, same process), or None
 *   (1, on_end, spans, incoming, drain, drain_every, SpanKind.SERVER)   TraceRecorder.on_end
 *   (2, on_end, lock, waiting, decided, bound, slow_ns, max_decisions, StatusCode.ERROR, inner_steps)
 *                                                          TailSampler.on_end for a local root
 *   (3, on_end)                                            any other processor */

enum { STEP_ENCODE = 0, STEP_RECORD = 1, STEP_TAIL = 2, STEP_CALL = 3 };
static const Py_ssize_t step_sizes[] = {7, 7, 10, 2};

typedef struct {
    PyObject_HEAD
    PyObject *span_type, *multi, *processors, *resource, *scope, *steps;
} EnderObject;

static PyObject *s__span_processor, *s__end_time, *s__resource, *s__instrumentation_scope,
    *s__immutable, *s__record_end_metrics, *s__status, *s__kind, *s_status_code, *s_acquire, *s_release, *s_append,
    *s_popitem, *n500, *s__shutdown, *s__pid, *s__queue, *s__max_queue_size, *s__max_export_batch_size,
    *s__worker_awaken, *s_appendleft, *s_is_set, *s_set;

static int check_steps(PyObject *steps, int depth) {
    if (!PyTuple_Check(steps)) goto bad;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(steps); i++) {
        PyObject *step = PyTuple_GET_ITEM(steps, i);
        if (!PyTuple_Check(step) || PyTuple_GET_SIZE(step) < 2 || !PyLong_CheckExact(PyTuple_GET_ITEM(step, 0)))
            goto bad;
        long code = PyLong_AsLong(PyTuple_GET_ITEM(step, 0));
        if (code < 0 || code > STEP_CALL || PyTuple_GET_SIZE(step) != step_sizes[code]) goto bad;
        if (code == STEP_ENCODE && !PyBytes_Check(PyTuple_GET_ITEM(step, 2))) goto bad;
        if (code == STEP_RECORD && !PyLong_CheckExact(PyTuple_GET_ITEM(step, 5))) goto bad;
        if (code == STEP_TAIL) {
            if (depth > 0 || !PyDict_Check(PyTuple_GET_ITEM(step, 3)) || !PyDict_Check(PyTuple_GET_ITEM(step, 4)) ||
                !PyLong_CheckExact(PyTuple_GET_ITEM(step, 5)) || !PyLong_CheckExact(PyTuple_GET_ITEM(step, 6)) ||
                !PyLong_CheckExact(PyTuple_GET_ITEM(step, 7)) || check_steps(PyTuple_GET_ITEM(step, 9), 1) < 0)
                goto bad;
        }
    }
    return 0;
bad:
    PyErr_SetString(PyExc_TypeError, "Ender: malformed steps");
    return -1;
}

static int call_one(PyObject *callable, PyObject *arg) {
    PyObject *result = PyObject_CallOneArg(callable, arg);
    if (result == NULL) return -1;
    Py_DECREF(result);
    return 0;
}

static int sampled_flags(PyObject *context) { /* the SpanContext tuple's trace_flags & 1; -1: not one */
    if (!PyTuple_Check(context) || PyTuple_GET_SIZE(context) < 4) return -1;
    long flags = PyLong_AsLong(PyTuple_GET_ITEM(context, 3));
    if (flags == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return (int)(flags & 1);
}

static int run_steps(PyObject *steps, PyObject *span, PyObject *fields, PyObject *end_ns);

/* BatchProcessor.emit(item): queued here when running, in the process that made it, with room left (and the
 * worker woken at a full batch, as emit does); otherwise emit itself runs (its warning, drop count, fork reset). */
static int queue_item(PyObject *batch, PyObject *emit, PyObject *item) {
    if (batch == Py_None) return call_one(emit, item);
    PyObject *fields = PyObject_GenericGetDict(batch, NULL);
    if (fields == NULL) return -1;
    PyObject *shutdown = PyDict_GetItemWithError(fields, s__shutdown), *pid = PyDict_GetItemWithError(fields, s__pid);
    PyObject *queue = PyDict_GetItemWithError(fields, s__queue);
    PyObject *most = PyDict_GetItemWithError(fields, s__max_queue_size);
    PyObject *batch_size = PyDict_GetItemWithError(fields, s__max_export_batch_size);
    if (PyErr_Occurred()) {
        Py_DECREF(fields);
        return -1;
    }
    Py_ssize_t queued = -1, limit = -1, full_batch = -1;
    if (shutdown == Py_False && pid != NULL && PyLong_CheckExact(pid) && PyLong_AsLong(pid) == (long)getpid() &&
        queue != NULL && most != NULL && PyLong_CheckExact(most) && batch_size != NULL && PyLong_CheckExact(batch_size)) {
        queued = PyObject_Length(queue);
        limit = PyLong_AsSsize_t(most);
        full_batch = PyLong_AsSsize_t(batch_size);
    }
    if (PyErr_Occurred() || queued < 0 || queued >= limit) {
        PyErr_Clear();
        Py_DECREF(fields);
        return call_one(emit, item);
    }
    Py_INCREF(queue);
    PyObject *result = PyObject_CallMethodOneArg(queue, s_appendleft, item);
    int err = result == NULL ? -1 : 0;
    Py_XDECREF(result);
    if (!err) {
        queued = PyObject_Length(queue);
        if (queued < 0) err = -1;
    }
    Py_DECREF(queue);
    if (!err && queued >= full_batch) {
        PyObject *awaken = PyDict_GetItemWithError(fields, s__worker_awaken);
        if (awaken == NULL) {
            err = PyErr_Occurred() ? -1 : 0;
        } else {
            Py_INCREF(awaken);
            PyObject *is_set = PyObject_CallMethodNoArgs(awaken, s_is_set);
            int truth = is_set == NULL ? -1 : PyObject_IsTrue(is_set);
            Py_XDECREF(is_set);
            if (truth == 0) {
                PyObject *woken = PyObject_CallMethodNoArgs(awaken, s_set);
                truth = woken == NULL ? -1 : 1;
                Py_XDECREF(woken);
            }
            if (truth < 0) err = -1;
            Py_DECREF(awaken);
        }
    }
    Py_DECREF(fields);
    return err;
}

static int step_encode(PyObject *step, PyObject *span, PyObject *fields) {
    PyObject *context = PyDict_GetItemWithError(fields, s__context);
    if (context == NULL) return PyErr_Occurred() ? -1 : 0;
    if (context == Py_None) return 0;
    int sampled = sampled_flags(context);
    if (sampled < 0) return call_one(PyTuple_GET_ITEM(step, 1), span);
    if (!sampled) return 0;
    PyObject *prefix = PyTuple_GET_ITEM(step, 2), *item = NULL;
    PyObject *encoded = PyObject_CallOneArg(PyTuple_GET_ITEM(step, 3), span);
    if (encoded != NULL && !(PyBytes_Check(encoded) && PyBytes_GET_SIZE(encoded) > 0)) {
        Py_DECREF(encoded); /* the compiled writer's None: the Python writer encodes it */
        encoded = PyObject_CallOneArg(PyTuple_GET_ITEM(step, 4), span);
    }
    if (encoded != NULL && PyBytes_Check(encoded)) {
        Py_ssize_t n = PyBytes_GET_SIZE(prefix), m = PyBytes_GET_SIZE(encoded);
        item = PyBytes_FromStringAndSize(NULL, n + m);
        if (item != NULL) {
            memcpy(PyBytes_AS_STRING(item), PyBytes_AS_STRING(prefix), n);
            memcpy(PyBytes_AS_STRING(item) + n, PyBytes_AS_STRING(encoded), m);
        }
    }
    Py_XDECREF(encoded);
    if (item == NULL) { /* as EncodingSpanProcessor: the exporter's encoder gets the span and reports */
        PyErr_Clear();
        item = Py_NewRef(span);
    }
    int err = queue_item(PyTuple_GET_ITEM(step, 6), PyTuple_GET_ITEM(step, 5), item);
    Py_DECREF(item);
    return err;
}

/* TraceRecorder.on_end: a server span waits in `incoming` for the next drain (which keeps it while its request
 * is listed), any other span goes to the `spans` ring, where the listed requests' children are found. */
static int step_record(PyObject *step, PyObject *span, PyObject *fields) {
    PyObject *incoming = PyTuple_GET_ITEM(step, 3);
    PyObject *result;
    PyObject *kind = PyDict_GetItemWithError(fields, s__kind);
    if (kind == NULL && PyErr_Occurred()) return -1;
    if (kind != PyTuple_GET_ITEM(step, 6)) { /* not `is SpanKind.SERVER` */
        if ((result = PyObject_CallMethodOneArg(PyTuple_GET_ITEM(step, 2), s_append, span)) == NULL) return -1;
        Py_DECREF(result);
        return 0;
    }
    if ((result = PyObject_CallMethodOneArg(incoming, s_append, span)) == NULL) return -1;
    Py_DECREF(result);
    Py_ssize_t n = PyObject_Length(incoming);
    if (n < 0) return -1;
    if (n >= PyLong_AsSsize_t(PyTuple_GET_ITEM(step, 5))) {
        if ((result = PyObject_CallNoArgs(PyTuple_GET_ITEM(step, 4))) == NULL) return -1;
        Py_DECREF(result);
    }
    return 0;
}

/* TailSampler._keep for a local root without waiting children: 1 keep, 0 drop, -1 error. */
static int tail_keep(PyObject *step, PyObject *fields, PyObject *trace_id, PyObject *end_ns) {
    PyObject *status = PyDict_GetItemWithError(fields, s__status);
    if (status == NULL) return PyErr_Occurred() ? -1 : 1;
    PyObject *code = PyObject_GetAttr(status, s_status_code);
    if (code == NULL) return -1;
    Py_DECREF(code); /* compared by identity, as `is StatusCode.ERROR`; the enum member stays alive */
    if (code == PyTuple_GET_ITEM(step, 8)) return 1;
    PyObject *attributes = PyDict_GetItemWithError(fields, s__attributes);
    if (attributes == NULL && PyErr_Occurred()) return -1;
    if (attributes != NULL && attributes != Py_None) {
        PyObject *plain = PyObject_GetAttr(attributes, s__dict);
        if (plain == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return -1;
            PyErr_Clear();
            plain = Py_NewRef(attributes);
        }
        PyObject *value = PyObject_CallMethodOneArg(plain, s_get, s_k_status);
        Py_DECREF(plain);
        if (value == NULL) return -1;
        int failed = PyLong_Check(value) ? PyObject_RichCompareBool(value, n500, Py_GE) : 0;
        Py_DECREF(value);
        if (failed) return failed; /* 1, or -1 on error */
    }
    PyObject *start = PyDict_GetItemWithError(fields, s__start_time);
    if (start == NULL && PyErr_Occurred()) return -1;
    long long begun = (start == NULL || start == Py_None) ? 0 : PyLong_AsLongLong(start);
    long long ended = PyLong_AsLongLong(end_ns);
    long long slow = PyLong_AsLongLong(PyTuple_GET_ITEM(step, 6));
    if (PyErr_Occurred()) return -1;
    if (ended - begun >= slow) return 1;
    PyObject *low = PyLong_FromUnsignedLongLong(PyLong_AsUnsignedLongLongMask(trace_id));
    if (low == NULL) return -1;
    int in_ratio = PyObject_RichCompareBool(low, PyTuple_GET_ITEM(step, 5), Py_LT);
    Py_DECREF(low);
    return in_ratio;
}

static int step_tail(PyObject *step, PyObject *span, PyObject *fields, PyObject *end_ns) {
    PyObject *on_end = PyTuple_GET_ITEM(step, 1), *lock = PyTuple_GET_ITEM(step, 2);
    PyObject *waiting = PyTuple_GET_ITEM(step, 3), *decided = PyTuple_GET_ITEM(step, 4);
    PyObject *parent = PyDict_GetItemWithError(fields, s__parent);
    PyObject *context = PyDict_GetItemWithError(fields, s__context);
    if (PyErr_Occurred()) return -1;
    if (context == NULL || !PyTuple_Check(context) || PyTuple_GET_SIZE(context) < 4) return call_one(on_end, span);
    int remote_sampled = 0;
    if (parent != NULL && parent != Py_None) {
        if (!PyTuple_Check(parent) || PyTuple_GET_SIZE(parent) < 4 || PyTuple_GET_ITEM(parent, 2) != Py_True)
            return call_one(on_end, span); /* a child (or not a SpanContext tuple): the sampler's own code */
        remote_sampled = sampled_flags(parent);
        if (remote_sampled < 0) return call_one(on_end, span);
    }
    PyObject *trace_id = PyTuple_GET_ITEM(context, 0);
    if (!PyLong_CheckExact(trace_id)) return call_one(on_end, span);
    PyObject *got = PyObject_CallMethodOneArg(lock, s_acquire, Py_False);
    if (got == NULL) return -1;
    int acquired = PyObject_IsTrue(got);
    Py_DECREF(got);
    if (acquired < 0) return -1;
    if (!acquired) return call_one(on_end, span); /* another thread decides: wait for it in Python */
    int keep = -1, python = 0;
    int has_children = PyDict_GET_SIZE(waiting) > 0 ? PyDict_Contains(waiting, trace_id) : 0;
    if (has_children < 0) goto unlock;
    if (has_children) { /* children ended before their root: the sampler's own code */
        python = 1;
        keep = 0;
        goto unlock;
    }
    keep = remote_sampled ? 1 : tail_keep(step, fields, trace_id, end_ns);
    if (keep < 0) goto unlock;
    if (PyObject_SetItem(decided, trace_id, keep ? Py_True : Py_False) < 0) {
        keep = -1;
        goto unlock;
    }
    if (PyDict_GET_SIZE(decided) > PyLong_AsSsize_t(PyTuple_GET_ITEM(step, 7))) {
        PyObject *popped = PyObject_CallMethodOneArg(decided, s_popitem, Py_False); /* popitem(last=False) */
        if (popped == NULL) {
            keep = -1;
            goto unlock;
        }
        Py_DECREF(popped);
    }
unlock:
    if (release_lock(lock) < 0) return -1;
    if (python) return call_one(on_end, span);
    return keep > 0 ? run_steps(PyTuple_GET_ITEM(step, 9), span, fields, end_ns) : 0;
}

static int run_steps(PyObject *steps, PyObject *span, PyObject *fields, PyObject *end_ns) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(steps); i++) {
        PyObject *step = PyTuple_GET_ITEM(steps, i);
        int err;
        switch (PyLong_AsLong(PyTuple_GET_ITEM(step, 0))) {
        case STEP_ENCODE: err = step_encode(step, span, fields); break;
        case STEP_RECORD: err = step_record(step, span, fields); break;
        case STEP_TAIL: err = step_tail(step, span, fields, end_ns); break;
        default: err = call_one(PyTuple_GET_ITEM(step, 1), span);
        }
        if (err < 0) return -1;
    }
    return 0;
}

static PyObject *end_in_python(PyObject *span, PyObject *end_ns) {
    PyObject *args[2] = {span, end_ns};
    return PyObject_VectorcallMethod(s_end, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* ender(span, end_ns) -> None */
static PyObject *ender_call(EnderObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    if (PyVectorcall_NARGS(nargsf) != 2 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "ender(span, end_ns)");
        return NULL;
    }
    PyObject *span = args[0], *end_ns = args[1];
    if (Py_TYPE(span) != (PyTypeObject *)self->span_type || !PyLong_CheckExact(end_ns)) return end_in_python(span, end_ns);
    PyObject *fields = PyObject_GenericGetDict(span, NULL);
    if (fields == NULL) return NULL;
    PyObject *processors = PyObject_GetAttr(self->multi, s__span_processors);
    if (processors == NULL) {
        Py_DECREF(fields);
        return NULL;
    }
    Py_DECREF(processors); /* compared by identity only; self->processors keeps that tuple alive */
    PyObject *lock = PyDict_GetItemWithError(fields, s__lock);
    if (processors != self->processors || lock == NULL ||
        PyDict_GetItemWithError(fields, s__span_processor) != self->multi ||
        PyDict_GetItemWithError(fields, s__end_time) != Py_None ||
        PyDict_GetItemWithError(fields, s__resource) != self->resource ||
        PyDict_GetItemWithError(fields, s__instrumentation_scope) != self->scope) {
        Py_DECREF(fields);
        if (PyErr_Occurred()) return NULL;
        return end_in_python(span, end_ns);
    }
    PyObject *start = PyDict_GetItemWithError(fields, s__start_time);
    if (start == NULL || start == Py_None) {
        Py_DECREF(fields);
        return PyErr_Occurred() ? NULL : end_in_python(span, end_ns); /* the SDK's error */
    }
    Py_INCREF(lock);
    PyObject *got = PyObject_CallMethodOneArg(lock, s_acquire, Py_False);
    int acquired = got == NULL ? -1 : PyObject_IsTrue(got);
    Py_XDECREF(got);
    if (acquired <= 0) {
        Py_DECREF(lock);
        Py_DECREF(fields);
        return acquired < 0 ? NULL : end_in_python(span, end_ns); /* held by a setter: the SDK waits for it */
    }
    int err = 0, ended = PyDict_GetItemWithError(fields, s__end_time) != Py_None;
    if (!ended) {
        PyObject *attributes = PyDict_GetItemWithError(fields, s__attributes);
        err = PyDict_SetItem(fields, s__end_time, end_ns) < 0 ||
              (attributes != NULL && PyObject_SetAttr(attributes, s__immutable, Py_True) < 0);
    }
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *released = PyObject_CallMethodNoArgs(lock, s_release);
    Py_DECREF(lock);
    if (released == NULL || exc != NULL || err) {
        Py_XDECREF(released);
        if (exc != NULL) PyErr_SetRaisedException(exc);
        Py_DECREF(fields);
        return NULL;
    }
    Py_DECREF(released);
    if (ended) { /* ended meanwhile by another thread: the SDK's warning */
        Py_DECREF(fields);
        return end_in_python(span, end_ns);
    }
    PyObject *record_end = PyDict_GetItemWithError(fields, s__record_end_metrics);
    if (record_end != NULL && record_end != Py_None) {
        int truth = PyObject_IsTrue(record_end);
        PyObject *r = truth > 0 ? PyObject_CallNoArgs(record_end) : NULL;
        if (truth < 0 || (truth > 0 && r == NULL)) {
            Py_DECREF(fields);
            return NULL;
        }
        Py_XDECREF(r);
    }
    err = PyErr_Occurred() ? -1 : run_steps(self->steps, span, fields, end_ns);
    Py_DECREF(fields);
    if (err < 0) return NULL;
    Py_RETURN_NONE;
}

#define ENDER_FIELDS(X) X(span_type) X(multi) X(processors) X(resource) X(scope) X(steps)

static int ender_init(EnderObject *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"span_type", "multi", "processors", "resource", "scope", "steps", NULL};
    PyObject *v[6];
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_SetString(PyExc_TypeError, "Ender() takes keyword arguments only");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO!OOO!", names, &v[0], &v[1], &PyTuple_Type, &v[2], &v[3],
                                     &v[4], &PyTuple_Type, &v[5]))
        return -1;
    if (!PyType_Check(v[0])) {
        PyErr_SetString(PyExc_TypeError, "span_type must be a type");
        return -1;
    }
    if (check_steps(v[5], 0) < 0) return -1;
    int i = 0;
#define SET(f) Py_XSETREF(self->f, Py_NewRef(v[i])); i++;
    ENDER_FIELDS(SET)
#undef SET
    return 0;
}

CALLABLE_TYPE(ender, EnderObject, ENDER_FIELDS, steps, EnderType, "Ender",
              "ender(span, end_ns): the kit's server span ended and handed to its processors (see the module's text).")

/* ------------------------------------------------------------------------------------------------ */
/* LogDirect: OtlpLogHandler's direct path (otel_asgi_kit.logs.otlp_handler) for a plain record, in C. Built by
 * the handler while the provider's only processor is the kit's EncodingLogRecordProcessor, for that processor
 * tuple. direct(record) returns True (queued, or dropped as the Python path drops it: the provider's switch
 * off, or a record logged while one is emitted) or None before doing anything when the Python path must take
 * the record: a LogRecord subclass, extra= fields, exc_info, an access logger, a formatter on the handler, a
 * processor added since, a logger name or level the handler has not learnt yet, another resource. What it
 * queues is what _emit_direct queues: the group prefix of the logger's name, then encode_log_fields(...) of
 * the same fields (the Python writer when the compiled one declines). An Exception on the way is handed to
 * report (as _emit_direct's caller does) and the record counts as handled. */

typedef struct {
    PyObject_HEAD
    PyObject *record_type, *handler, *multi, *processors, *provider, *names, *levels, *access, *emitting,
        *span_context, *encode, *encode_python, *time_ns, *batch, *emit, *report;
    Py_ssize_t plain_size;
} LogDirectObject;

static PyObject *s_name, *s_levelno, *s_levelname, *s_exc_info, *s_created, *s_formatter, *s_getMessage,
    *s__log_record_processors, *s_zero;

static PyObject *log_direct_work(LogDirectObject *self, PyObject *record, PyObject *known, PyObject *level,
                                 PyObject *created) {
    PyObject *result = NULL, *body = NULL, *ctx = NULL, *trace_id = NULL, *span_id = NULL, *flags = NULL,
             *stamp = NULL, *observed = NULL, *encoded = NULL, *item = NULL;
    PyObject *on = PyObject_CallNoArgs(PyTuple_GET_ITEM(known, 0));
    int truth = on == NULL ? -1 : PyObject_IsTrue(on);
    Py_XDECREF(on);
    if (truth <= 0) {
        if (truth == 0) result = Py_NewRef(Py_True); /* switched off by the provider's configurator */
        goto done;
    }
    body = PyObject_CallMethodNoArgs(record, s_getMessage);
    if (body == NULL) goto done;
    ctx = PyObject_CallNoArgs(self->span_context);
    if (ctx == NULL) goto done;
    if (ctx == Py_None) {
        trace_id = Py_NewRef(s_zero);
        span_id = Py_NewRef(s_zero);
        flags = Py_NewRef(s_zero);
    } else {
        if (!PyTuple_Check(ctx) || PyTuple_GET_SIZE(ctx) < 4) {
            PyErr_SetString(PyExc_TypeError, "the current span context is not a SpanContext tuple");
            goto done;
        }
        trace_id = Py_NewRef(PyTuple_GET_ITEM(ctx, 0));
        span_id = Py_NewRef(PyTuple_GET_ITEM(ctx, 1));
        flags = PyNumber_Long(PyTuple_GET_ITEM(ctx, 3));
        if (flags == NULL) goto done;
    }
    stamp = PyLong_FromDouble(PyFloat_AS_DOUBLE(created) * 1e9);
    if (stamp == NULL) goto done;
    observed = PyObject_CallNoArgs(self->time_ns);
    if (observed == NULL) goto done;
    PyObject *args[11] = {stamp,   PyTuple_GET_ITEM(level, 1), PyTuple_GET_ITEM(level, 2), body, Py_None, s_zero,
                          flags,   trace_id,                   span_id,                    observed, Py_None};
    encoded = PyObject_Vectorcall(self->encode, args, 11, NULL);
    if (encoded == Py_None) {
        Py_DECREF(encoded);
        encoded = PyObject_Vectorcall(self->encode_python, args, 11, NULL);
    }
    if (encoded == NULL) goto done;
    PyObject *prefix = PyTuple_GET_ITEM(known, 2);
    if (!PyBytes_Check(encoded) || !PyBytes_Check(prefix)) {
        PyErr_SetString(PyExc_TypeError, "the log writer did not return bytes");
        goto done;
    }
    Py_ssize_t head = PyBytes_GET_SIZE(prefix), tail = PyBytes_GET_SIZE(encoded);
    item = PyBytes_FromStringAndSize(NULL, head + tail);
    if (item == NULL) goto done;
    memcpy(PyBytes_AS_STRING(item), PyBytes_AS_STRING(prefix), (size_t)head);
    memcpy(PyBytes_AS_STRING(item) + head, PyBytes_AS_STRING(encoded), (size_t)tail);
    if (queue_item(self->batch, self->emit, item) < 0) goto done;
    result = Py_NewRef(Py_True);
done:
    Py_XDECREF(body);
    Py_XDECREF(ctx);
    Py_XDECREF(trace_id);
    Py_XDECREF(span_id);
    Py_XDECREF(flags);
    Py_XDECREF(stamp);
    Py_XDECREF(observed);
    Py_XDECREF(encoded);
    Py_XDECREF(item);
    return result;
}

/* direct(record) -> True, or None: the Python path takes the record */
static PyObject *log_direct_call(LogDirectObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    if (PyVectorcall_NARGS(nargsf) != 1 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "direct(record)");
        return NULL;
    }
    PyObject *record = args[0];
    if (Py_TYPE(record) != (PyTypeObject *)self->record_type) Py_RETURN_NONE;
    PyObject *rd = PyObject_GenericGetDict(record, NULL);
    if (rd == NULL) return NULL;
    PyObject *result = NULL, *handler_fields = NULL, *provider_fields = NULL, *processors = NULL;
    if (!PyDict_Check(rd) || PyDict_GET_SIZE(rd) > self->plain_size) goto python;
    PyObject *name = PyDict_GetItemWithError(rd, s_name), *exc_info = PyDict_GetItemWithError(rd, s_exc_info), *levelno = PyDict_GetItemWithError(rd, s_levelno);
    PyObject *levelname = PyDict_GetItemWithError(rd, s_levelname), *created = PyDict_GetItemWithError(rd, s_created);
    if (PyErr_Occurred()) goto done;
    if (name == NULL || !PyUnicode_CheckExact(name) || exc_info == NULL || levelno == NULL || levelname == NULL ||
        created == NULL || !PyFloat_CheckExact(created))
        goto python;
    int truth = PyObject_IsTrue(exc_info);
    if (truth != 0) {
        if (truth < 0) goto done;
        goto python;
    }
    truth = PySequence_Contains(self->access, name);
    if (truth != 0) {
        if (truth < 0) goto done;
        goto python;
    }
    handler_fields = PyObject_GenericGetDict(self->handler, NULL);
    if (handler_fields == NULL) goto done;
    PyObject *formatter = PyDict_GetItemWithError(handler_fields, s_formatter);
    if (formatter != Py_None) {
        if (PyErr_Occurred()) goto done;
        goto python;
    }
    processors = PyObject_GetAttr(self->multi, s__log_record_processors);
    if (processors == NULL) goto done;
    if (processors != self->processors) goto python;
    PyObject *known = PyDict_GetItemWithError(self->names, name);
    if (known == NULL || !PyTuple_Check(known) || PyTuple_GET_SIZE(known) != 3) {
        if (PyErr_Occurred()) goto done;
        goto python;
    }
    provider_fields = PyObject_GenericGetDict(self->provider, NULL);
    if (provider_fields == NULL) goto done;
    PyObject *resource = PyDict_GetItemWithError(provider_fields, s__resource);
    if (resource == NULL || resource != PyTuple_GET_ITEM(known, 1)) {
        if (PyErr_Occurred()) goto done;
        goto python;
    }
    PyObject *level = PyDict_GetItemWithError(self->levels, levelno);
    if (level == NULL || !PyTuple_Check(level) || PyTuple_GET_SIZE(level) != 3) {
        if (PyErr_Occurred()) goto done;
        goto python;
    }
    truth = PyObject_RichCompareBool(PyTuple_GET_ITEM(level, 0), levelname, Py_EQ);
    if (truth != 1) {
        if (truth < 0) goto done;
        goto python;
    }
    PyObject *busy = NULL;
    if (PyContextVar_Get(self->emitting, Py_False, &busy) < 0) goto done;
    truth = PyObject_IsTrue(busy);
    Py_DECREF(busy);
    if (truth != 0) {
        if (truth > 0) result = Py_NewRef(Py_True); /* logged while a record is emitted: dropped, as in Python */
        goto done;
    }
    PyObject *token = PyContextVar_Set(self->emitting, Py_True);
    if (token == NULL) goto done;
    Py_INCREF(known);
    Py_INCREF(level);
    Py_INCREF(created);
    result = log_direct_work(self, record, known, level, created);
    Py_DECREF(known);
    Py_DECREF(level);
    Py_DECREF(created);
    PyObject *exc = result == NULL ? PyErr_GetRaisedException() : NULL;
    int reset = PyContextVar_Reset(self->emitting, token);
    Py_DECREF(token);
    if (exc != NULL) {
        if (reset < 0) {
            Py_DECREF(exc);
            goto done;
        }
        if (!PyErr_GivenExceptionMatches(exc, PyExc_Exception)) {
            PyErr_SetRaisedException(exc); /* KeyboardInterrupt, SystemExit: not ours to swallow */
            goto done;
        }
        PyObject *reported = PyObject_CallOneArg(self->report, exc); /* a log line must never break the app */
        Py_DECREF(exc);
        if (reported == NULL) goto done;
        Py_DECREF(reported);
        result = Py_NewRef(Py_True);
    } else if (reset < 0) {
        Py_CLEAR(result);
    }
    goto done;
python:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(processors);
    Py_XDECREF(provider_fields);
    Py_XDECREF(handler_fields);
    Py_DECREF(rd);
    return result;
}

#define LOG_DIRECT_FIELDS(X)                                                                                       \
    X(record_type) X(handler) X(multi) X(processors) X(provider) X(names) X(levels) X(access) X(emitting)          \
        X(span_context) X(encode) X(encode_python) X(time_ns) X(batch) X(emit) X(report)

static int log_direct_init(LogDirectObject *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"record_type", "handler", "multi", "processors", "provider", "names", "levels",
                            "access", "emitting", "span_context", "encode", "encode_python", "time_ns", "batch",
                            "emit", "report", "plain_size", NULL};
    PyObject *v[16];
    Py_ssize_t plain_size;
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_SetString(PyExc_TypeError, "LogDirect() takes keyword arguments only");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOO!OO!O!OOOOOOOOOn", names, &v[0], &v[1], &v[2], &PyTuple_Type,
                                     &v[3], &v[4], &PyDict_Type, &v[5], &PyDict_Type, &v[6], &v[7], &v[8], &v[9],
                                     &v[10], &v[11], &v[12], &v[13], &v[14], &v[15], &plain_size))
        return -1;
    if (!PyType_Check(v[0]) || !PyContextVar_CheckExact(v[8])) {
        PyErr_SetString(PyExc_TypeError, "LogDirect: record_type must be a type and emitting a ContextVar");
        return -1;
    }
    int i = 0;
#define SET(f) Py_XSETREF(self->f, Py_NewRef(v[i])); i++;
    LOG_DIRECT_FIELDS(SET)
#undef SET
    self->plain_size = plain_size;
    return 0;
}

CALLABLE_TYPE(log_direct, LogDirectObject, LOG_DIRECT_FIELDS, report, LogDirectType, "LogDirect",
              "direct(record) -> True, or None for the Python path: a plain log record queued as OTLP bytes.")

/* ------------------------------------------------------------------------------------------------ */
/* EcsLine: otel_asgi_kit.logs.ecs_json.EcsJsonFormatter.format for a plain record, in C. line(record) returns the
 * JSON line format() would return, or None before doing anything when format()'s Python code must write it: a
 * LogRecord subclass, extra= fields, exc_info or stack_info, an access logger, a (logger, level) pair the
 * formatter has not learnt yet, text that is not ASCII after escaping (it always is: the escape is json's
 * ensure_ascii one, passed in). The head strings come from the formatter's own cache (heads), the escaping from
 * json (escape), the trace ids from the kit's span_context(); the time is written as Python writes it
 * (strftime of gmtime for the whole second, the milliseconds truncated). */

typedef struct {
    PyObject_HEAD
    PyObject *record_type, *heads, *escape, *span_context, *access;
    Py_ssize_t plain_size;
    long long second;
    char second_text[32];
    Py_ssize_t second_len;
} EcsLineObject;

static PyObject *s_stack_info, *s_rstrip, *s_newline;

static int ascii_part(PyObject *text) { return PyUnicode_Check(text) && PyUnicode_IS_ASCII(text); }

static PyObject *ecs_line_call(EcsLineObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    if (PyVectorcall_NARGS(nargsf) != 1 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "line(record)");
        return NULL;
    }
    PyObject *record = args[0];
    if (Py_TYPE(record) != (PyTypeObject *)self->record_type) Py_RETURN_NONE;
    PyObject *rd = PyObject_GenericGetDict(record, NULL);
    if (rd == NULL) return NULL;
    PyObject *result = NULL, *key = NULL, *message = NULL, *escaped = NULL, *ctx = NULL;
    if (!PyDict_Check(rd) || PyDict_GET_SIZE(rd) > self->plain_size) goto python;
    PyObject *name = PyDict_GetItemWithError(rd, s_name), *levelname = PyDict_GetItemWithError(rd, s_levelname), *exc_info = PyDict_GetItemWithError(rd, s_exc_info);
    PyObject *stack_info = PyDict_GetItemWithError(rd, s_stack_info), *created = PyDict_GetItemWithError(rd, s_created);
    if (PyErr_Occurred()) goto done;
    if (name == NULL || !PyUnicode_CheckExact(name) || levelname == NULL || exc_info == NULL || stack_info == NULL ||
        created == NULL || !PyFloat_CheckExact(created))
        goto python;
    int truth = PyObject_IsTrue(exc_info);
    if (truth == 0) truth = PyObject_IsTrue(stack_info);
    if (truth == 0) truth = PySequence_Contains(self->access, name);
    if (truth != 0) {
        if (truth < 0) goto done;
        goto python;
    }
    key = PyTuple_Pack(2, name, levelname);
    if (key == NULL) goto done;
    PyObject *head = PyDict_GetItemWithError(self->heads, key);
    if (head == NULL || !PyTuple_Check(head) || PyTuple_GET_SIZE(head) != 2 || !ascii_part(PyTuple_GET_ITEM(head, 0)) ||
        !ascii_part(PyTuple_GET_ITEM(head, 1))) {
        if (PyErr_Occurred()) goto done;
        goto python;
    }
    Py_INCREF(head);
    message = PyObject_CallMethodNoArgs(record, s_getMessage);
    if (message == NULL || !PyUnicode_Check(message)) {
        Py_DECREF(head);
        if (message != NULL) goto python; /* a getMessage() of its own that is not str: Python says what happens */
        goto done;
    }
    Py_ssize_t length = PyUnicode_GET_LENGTH(message);
    if (length > 0 && PyUnicode_READ_CHAR(message, length - 1) == '\n') {
        PyObject *stripped = PyObject_CallMethodOneArg(message, s_rstrip, s_newline);
        Py_SETREF(message, stripped);
        if (message == NULL) {
            Py_DECREF(head);
            goto done;
        }
    }
    escaped = PyObject_CallOneArg(self->escape, message);
    ctx = escaped == NULL ? NULL : PyObject_CallNoArgs(self->span_context);
    if (ctx == NULL || !ascii_part(escaped)) {
        Py_DECREF(head);
        if (ctx != NULL) goto python;
        goto done;
    }
    /* "@timestamp": the second's text (cached), then the milliseconds as Python computes them */
    double when = PyFloat_AS_DOUBLE(created);
    if (!(when >= 0 && when < 253402300800.0)) { /* before 1970 or after 9999: Python's own text */
        Py_DECREF(head);
        goto python;
    }
    long long second = (long long)when;
    if (second != self->second) {
        time_t t = (time_t)second;
        struct tm tm;
        if (gmtime_r(&t, &tm) == NULL) {
            Py_DECREF(head);
            goto python;
        }
        size_t n = strftime(self->second_text, sizeof(self->second_text), "%Y-%m-%dT%H:%M:%S", &tm);
        if (n == 0) {
            Py_DECREF(head);
            goto python;
        }
        self->second = second;
        self->second_len = (Py_ssize_t)n;
    }
    int ms = (int)((when - (double)second) * 1000);
    char stamp[48];
    int stamp_len = snprintf(stamp, sizeof(stamp), "%.*s.%03dZ", (int)self->second_len, self->second_text, ms);
    char ids[80];
    Py_ssize_t ids_len = 0;
    if (ctx != Py_None) {
        if (!PyTuple_Check(ctx) || PyTuple_GET_SIZE(ctx) < 2) {
            Py_DECREF(head);
            PyErr_SetString(PyExc_TypeError, "the current span context is not a SpanContext tuple");
            goto done;
        }
        static const char a[] = ", \"trace.id\": \"", b[] = "\", \"span.id\": \"";
        memcpy(ids, a, sizeof(a) - 1);
        ids_len = sizeof(a) - 1;
        if (put_hex(ids + ids_len, PyTuple_GET_ITEM(ctx, 0), 32) < 0) {
            Py_DECREF(head);
            goto done;
        }
        ids_len += 32;
        memcpy(ids + ids_len, b, sizeof(b) - 1);
        ids_len += sizeof(b) - 1;
        if (put_hex(ids + ids_len, PyTuple_GET_ITEM(ctx, 1), 16) < 0) {
            Py_DECREF(head);
            goto done;
        }
        ids_len += 16;
        ids[ids_len++] = '"';
    }
    /* {"@timestamp": "<stamp>", <head0>"message": <escaped>, <head1><ids>} */
    static const char p1[] = "{\"@timestamp\": \"", p2[] = "\", ", p3[] = "\"message\": ", p4[] = ", ";
    PyObject *h0 = PyTuple_GET_ITEM(head, 0), *h1 = PyTuple_GET_ITEM(head, 1);
    Py_ssize_t total = (Py_ssize_t)(sizeof(p1) - 1) + stamp_len + (Py_ssize_t)(sizeof(p2) - 1) + PyUnicode_GET_LENGTH(h0) +
                       (Py_ssize_t)(sizeof(p3) - 1) + PyUnicode_GET_LENGTH(escaped) + (Py_ssize_t)(sizeof(p4) - 1) +
                       PyUnicode_GET_LENGTH(h1) + ids_len + 1;
    result = PyUnicode_New(total, 127);
    if (result != NULL) {
        char *out = (char *)PyUnicode_1BYTE_DATA(result);
#define PUT(data, n)                                                                                                 \
    memcpy(out, data, (size_t)(n));                                                                                   \
    out += (n);
        PUT(p1, sizeof(p1) - 1)
        PUT(stamp, stamp_len)
        PUT(p2, sizeof(p2) - 1)
        PUT(PyUnicode_1BYTE_DATA(h0), PyUnicode_GET_LENGTH(h0))
        PUT(p3, sizeof(p3) - 1)
        PUT(PyUnicode_1BYTE_DATA(escaped), PyUnicode_GET_LENGTH(escaped))
        PUT(p4, sizeof(p4) - 1)
        PUT(PyUnicode_1BYTE_DATA(h1), PyUnicode_GET_LENGTH(h1))
        PUT(ids, ids_len)
#undef PUT
        *out = '}';
    }
    Py_DECREF(head);
    goto done;
python:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(key);
    Py_XDECREF(message);
    Py_XDECREF(escaped);
    Py_XDECREF(ctx);
    Py_DECREF(rd);
    return result;
}

#define ECS_LINE_FIELDS(X) X(record_type) X(heads) X(escape) X(span_context) X(access)

static int ecs_line_init(EcsLineObject *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"record_type", "heads", "escape", "span_context", "access", "plain_size", NULL};
    PyObject *v[5];
    Py_ssize_t plain_size;
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_SetString(PyExc_TypeError, "EcsLine() takes keyword arguments only");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!OOOn", names, &v[0], &PyDict_Type, &v[1], &v[2], &v[3], &v[4],
                                     &plain_size))
        return -1;
    if (!PyType_Check(v[0])) {
        PyErr_SetString(PyExc_TypeError, "EcsLine: record_type must be a type");
        return -1;
    }
    int i = 0;
#define SET(f) Py_XSETREF(self->f, Py_NewRef(v[i])); i++;
    ECS_LINE_FIELDS(SET)
#undef SET
    self->plain_size = plain_size;
    self->second = -1;
    self->second_len = 0;
    return 0;
}

CALLABLE_TYPE(ecs_line, EcsLineObject, ECS_LINE_FIELDS, access, EcsLineType, "EcsLine",
              "line(record) -> the ECS JSON line of a plain record, or None for the Python formatter.")

/* ------------------------------------------------------------------------------------------------ */

#define CORE_FIELDS(X)                                                                                               \
    X(request_type) X(inst) X(methods) X(fields) X(extract) X(redact) X(start_span) X(attach) X(detach) X(current_task)      \
        X(active) X(metrics) X(perf_counter) X(time_ns) X(trace_header) X(send_last) X(span_key)         \
            X(span_type) X(make_root) X(end_span) X(decisions)

static int core_init(CoreObject *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"request_type", "inst", "methods", "fields", "extract", "redact", "start_span",
                            "attach", "detach", "current_task", "active", "metrics", "perf_counter",
                            "time_ns", "trace_header", "send_last", "span_key", "span_type", "make_root", "end_span", "decisions", "background_min", NULL};
    PyObject *v[21];
    double background_min;
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_SetString(PyExc_TypeError, "Core() takes keyword arguments only");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO!O!OOOOOOO!OOOOOOOOOOd", names, &v[0], &v[1], &PyDict_Type, &v[2],
                                     &PyFrozenSet_Type, &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &PyDict_Type,
                                     &v[10], &v[11], &v[12], &v[13], &v[14], &v[15], &v[16], &v[17], &v[18],
                                     &v[19], &v[20], &background_min))
        return -1;
    if (!PyType_Check(v[0]) || !PyType_IsSubtype((PyTypeObject *)v[0], &RequestBaseType)) {
        PyErr_SetString(PyExc_TypeError, "request_type must be a subclass of RequestBase");
        return -1;
    }
    if (!PyType_Check(v[17])) {
        PyErr_SetString(PyExc_TypeError, "span_type must be a type");
        return -1;
    }
    if (v[14] != Py_None && !PyBytes_Check(v[14])) {
        PyErr_SetString(PyExc_TypeError, "trace_header must be bytes or None");
        return -1;
    }
    int i = 0;
#define SET(f) Py_XSETREF(self->f, Py_NewRef(v[i])); i++;
    CORE_FIELDS(SET)
#undef SET
    self->background_min = background_min;
    return 0;
}

static int core_traverse(CoreObject *self, visitproc visit, void *arg) {
#define VISIT(f) Py_VISIT(self->f);
    CORE_FIELDS(VISIT)
#undef VISIT
    return 0;
}

static int core_clear(CoreObject *self) {
#define CLEAR(f) Py_CLEAR(self->f);
    CORE_FIELDS(CLEAR)
#undef CLEAR
    return 0;
}

static void core_dealloc(CoreObject *self) {
    PyObject_GC_UnTrack(self);
    core_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *core_start_checked(CoreObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (self->request_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Core was not initialised");
        return NULL;
    }
    return core_start(self, args, nargs);
}

static PyObject *core_start_request_checked(CoreObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (self->request_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Core was not initialised");
        return NULL;
    }
    return core_start_request(self, args, nargs);
}

static PyMethodDef core_methods[] = {
    {"start", (PyCFunction)(void (*)(void))core_start_checked, METH_FASTCALL,
     "start(scope, send) -> request: the request's span started and its context attached."},
    {"start_request", (PyCFunction)(void (*)(void))core_start_request_checked, METH_FASTCALL,
     "start_request(raw_method, scheme, path, query, parent, user_agent, http_version, request_bytes, peer) -> "
     "request: as start, from values an adapter read itself."},
    {NULL},
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "otel_asgi_kit_accel._core.Core",
    .tp_basicsize = sizeof(CoreObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)core_init,
    .tp_dealloc = (destructor)core_dealloc,
    .tp_traverse = (traverseproc)core_traverse,
    .tp_clear = (inquiry)core_clear,
    .tp_methods = core_methods,
    .tp_doc = "The kit's request path constants and callables, built once (see the module's text).",
};

static PyMethodDef module_methods[] = {
    {"trace_header_value", (PyCFunction)module_trace_header_value, METH_O,
     "The W3C traceresponse value of a span (its get_span_context(), a 6-tuple)."},
    {"fast_context", (PyCFunction)(void (*)(void))module_fast_context, METH_FASTCALL,
     "fast_context(attach, detach, var, key, context_type): a Core's attach and detach, when they are these two "
     "functions, done in C on the context variable (all None: never)."},
    {"fast_kit_attributes", (PyCFunction)module_fast_kit_attributes, METH_O,
     "Spans whose type's set_kit_attributes is this function (None: none) have it done on their fields in C."},
    {"fast_span_context", (PyCFunction)module_fast_span_context, METH_O,
     "Spans of this exact type (None: of none) have their context read from their `_context` field."},
    {NULL},
};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_core", NULL, -1, module_methods, NULL, NULL, NULL, NULL};

#define INTERN(var, text)                                                                                            \
    if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL;
#define BYTES(var, text)                                                                                             \
    if ((var = PyBytes_FromString(text)) == NULL) return NULL;

PyMODINIT_FUNC PyInit__core(void) {
    INTERN(s_type, "type")
    INTERN(s_headers, "headers")
    INTERN(s_query_string, "query_string")
    INTERN(s_method, "method")
    INTERN(s_scheme, "scheme")
    INTERN(s_path, "path")
    INTERN(s_http_version, "http_version")
    INTERN(s_client, "client")
    INTERN(s_http, "http")
    INTERN(s_GET, "GET")
    INTERN(s_HTTP, "HTTP")
    INTERN(s_OTHER, "_OTHER")
    INTERN(s_empty, "")
    INTERN(s_k_method, "http.request.method")
    INTERN(s_k_path, "url.path")
    INTERN(s_k_scheme, "url.scheme")
    INTERN(s_k_query, "url.query")
    INTERN(s_k_method_original, "http.request.method_original")
    INTERN(s_k_user_agent, "user_agent.original")
    INTERN(s_k_version, "network.protocol.version")
    INTERN(s_k_route, "http.route")
    INTERN(s_k_status, "http.response.status_code")
    INTERN(s_k_client, "client.address")
    INTERN(s_t_body, "http.response.body")
    INTERN(s_t_start, "http.response.start")
    INTERN(s_t_pathsend, "http.response.pathsend")
    INTERN(s_body, "body")
    INTERN(s_more_body, "more_body")
    INTERN(s_status_key, "status")
    INTERN(s_set_kit_attributes, "set_kit_attributes")
    INTERN(s_end, "end")
    INTERN(s_get_span_context, "get_span_context")
    INTERN(s_get, "get")
    BYTES(s_user_agent_name, "user-agent")
    BYTES(s_content_length_name, "content-length")
    INTERN(s__active, "_active")
    INTERN(s__series, "_series")
    INTERN(s__new_series, "_new_series")
    INTERN(s_duration, "duration")
    INTERN(s_response_size, "response_size")
    INTERN(s_request_size, "request_size")
    INTERN(s_record, "record")
    INTERN(s_record_sampled, "record_sampled")
    if ((one = PyLong_FromLong(1)) == NULL || (minus_one = PyLong_FromLong(-1)) == NULL) return NULL;
    INTERN(s_is_enabled, "is_enabled")
    INTERN(s__tracer_config, "_tracer_config")
    INTERN(s_getrandbits, "getrandbits")
    INTERN(s__name, "_name")
    INTERN(s__context, "_context")
    INTERN(s__parent, "_parent")
    INTERN(s__lock, "_lock")
    INTERN(s__attributes, "_attributes")
    INTERN(s__events, "_events")
    INTERN(s__links, "_links")
    INTERN(s__start_time, "_start_time")
    INTERN(s__dict, "_dict")
    INTERN(s_parent_context, "parent_context")
    if ((kw_parent_context = PyTuple_Pack(1, s_parent_context)) == NULL) return NULL;
    INTERN(s__span_processors, "_span_processors")
    INTERN(s__span_processor, "_span_processor")
    INTERN(s__end_time, "_end_time")
    INTERN(s__resource, "_resource")
    INTERN(s__instrumentation_scope, "_instrumentation_scope")
    INTERN(s__immutable, "_immutable")
    INTERN(s__record_end_metrics, "_record_end_metrics")
    INTERN(s__status, "_status")
    INTERN(s__kind, "_kind")
    INTERN(s_status_code, "status_code")
    INTERN(s_acquire, "acquire")
    INTERN(s_release, "release")
    INTERN(s_append, "append")
    INTERN(s_popitem, "popitem")
    INTERN(s__shutdown, "_shutdown")
    INTERN(s__pid, "_pid")
    INTERN(s__queue, "_queue")
    INTERN(s__max_queue_size, "_max_queue_size")
    INTERN(s__max_export_batch_size, "_max_export_batch_size")
    INTERN(s__worker_awaken, "_worker_awaken")
    INTERN(s_appendleft, "appendleft")
    INTERN(s_is_set, "is_set")
    INTERN(s_set, "set")
    INTERN(s_name, "name")
    INTERN(s_levelno, "levelno")
    INTERN(s_levelname, "levelname")
    INTERN(s_exc_info, "exc_info")
    INTERN(s_created, "created")
    INTERN(s_formatter, "formatter")
    INTERN(s_getMessage, "getMessage")
    INTERN(s__log_record_processors, "_log_record_processors")
    if ((s_zero = PyLong_FromLong(0)) == NULL) return NULL;
    INTERN(s_stack_info, "stack_info")
    INTERN(s_rstrip, "rstrip")
    INTERN(s_newline, "\n")
    if ((n500 = PyLong_FromLong(500)) == NULL) return NULL;
    if ((empty_tuple = PyTuple_New(0)) == NULL) return NULL;
    if ((n128 = PyLong_FromLong(128)) == NULL || (n64 = PyLong_FromLong(64)) == NULL) return NULL;
    if (PyType_Ready(&RequestBaseType) < 0 || PyType_Ready(&CoreType) < 0 || PyType_Ready(&MakerType) < 0 ||
        PyType_Ready(&HistType) < 0 || PyType_Ready(&EnderType) < 0 ||
        PyType_Ready(&LogDirectType) < 0 || PyType_Ready(&EcsLineType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) return NULL;
    if (PyModule_AddObjectRef(module, "RequestBase", (PyObject *)&RequestBaseType) < 0 ||
        PyModule_AddObjectRef(module, "Core", (PyObject *)&CoreType) < 0 ||
        PyModule_AddObjectRef(module, "RootMaker", (PyObject *)&MakerType) < 0 ||
        PyModule_AddObjectRef(module, "HistogramBase", (PyObject *)&HistType) < 0 ||
        PyModule_AddObjectRef(module, "Ender", (PyObject *)&EnderType) < 0 ||
        PyModule_AddObjectRef(module, "LogDirect", (PyObject *)&LogDirectType) < 0 ||
        PyModule_AddObjectRef(module, "EcsLine", (PyObject *)&EcsLineType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
