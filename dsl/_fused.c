/* The fused lexer and LALR loop of `dsl.lalr.FusedParser._run`, in C.

   It does step for step what `FusedParser._py_run` (the Python loop, the reference and the
   fallback) does: match the parser state's fused pattern at the position, make the token as
   `dsl.lexer.FlowLexer.lex` makes it, and apply the parse table's shifts and reductions. The
   patterns, the tables and the tree-building callbacks stay Python objects; only the per-token
   bookkeeping between them moves here. `tests/dsl/test_tree_builder.py` and
   `tests/dsl/test_lexer.py` run both loops against Lark's own parser.

   run(text, end, progress, table, actions, token_callbacks, skip_newlines, token_type,
       state_stack, value_stack, made) -> int

   `progress` is a list [pos, line, line_start, last_token], read at the start and written back
   at the end, also when an exception leaves the loop. The result is 0 when the text ended or no
   pattern matched at `pos` (the caller lets Lark's lexer go on from there), 1 when the parse
   table has no action for `last_token` (the caller lets Lark report it from the same stacks).
   `made` is None or a list that gets every token made (completion reads them). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

/* The token attributes, in `Token.__slots__`, written directly where they are plain slots. */
enum { T_TYPE, T_START_POS, T_VALUE, T_LINE, T_COLUMN, T_END_LINE, T_END_COLUMN, T_END_POS, T_COUNT };
static const char *slot_names[T_COUNT] = {
    "type", "start_pos", "value", "line", "column", "end_line", "end_column", "end_pos",
};
static PyObject *slot_strings[T_COUNT];

static PyObject *str_lastgroup, *str_span;

/* The slot offsets found for one token type (the type the parser makes its tokens of). */
static PyTypeObject *offsets_for = NULL;
static Py_ssize_t slot_offsets[T_COUNT];

static int
find_offsets(PyTypeObject *type)
{
    if (offsets_for == type) {
        return 0;
    }
    for (int i = 0; i < T_COUNT; i++) {
        slot_offsets[i] = -1;
        /* On the class, a slot's attribute is its member descriptor. */
        PyObject *descr = PyObject_GetAttr((PyObject *)type, slot_strings[i]);
        if (descr == NULL) {
            PyErr_Clear(); /* not a slot here: set as an attribute */
            continue;
        }
        if (Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
            if (member->type == T_OBJECT_EX && !(member->flags & READONLY)) {
                slot_offsets[i] = member->offset;
            }
        }
        Py_DECREF(descr);
    }
    Py_XINCREF(type);
    Py_XSETREF(offsets_for, type);
    return 0;
}

/* token.<slot> = value (a new reference is taken). */
static int
set_slot(PyObject *token, int slot, PyObject *value)
{
    Py_ssize_t offset = slot_offsets[slot];
    if (offset < 0) {
        return PyObject_SetAttr(token, slot_strings[slot], value);
    }
    PyObject **place = (PyObject **)((char *)token + offset);
    Py_INCREF(value);
    Py_XSETREF(*place, value);
    return 0;
}

static int
set_slot_long(PyObject *token, int slot, Py_ssize_t number)
{
    PyObject *value = PyLong_FromSsize_t(number);
    if (value == NULL) {
        return -1;
    }
    int result = set_slot(token, slot, value);
    Py_DECREF(value);
    return result;
}

/* How many line breaks lie in text[start:stop], and the offset just after the last one. */
static Py_ssize_t
count_newlines(PyObject *text, Py_ssize_t start, Py_ssize_t stop, Py_ssize_t *after_last)
{
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t count = 0;
    for (Py_ssize_t i = start; i < stop; i++) {
        if (PyUnicode_READ(kind, data, i) == '\n') {
            count++;
            *after_last = i + 1;
        }
    }
    return count;
}

/* list.append(item) of a new reference, which is given up either way; -1 when item is NULL
   (its error set) or the append failed. */
static int
push_new(PyObject *list, PyObject *item)
{
    if (item == NULL) {
        return -1;
    }
    int result = PyList_Append(list, item);
    Py_DECREF(item);
    return result;
}

/* actions[state][symbol], borrowed; NULL with an error set when there is none. */
static PyObject *
goto_state(PyObject *actions, PyObject *state, PyObject *symbol)
{
    PyObject *row = PyDict_GetItemWithError(actions, state);
    if (row == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetObject(PyExc_KeyError, state);
        }
        return NULL;
    }
    PyObject *next = PyDict_GetItemWithError(row, symbol);
    if (next == NULL && !PyErr_Occurred()) {
        PyErr_SetObject(PyExc_KeyError, symbol);
    }
    return next;
}

/* table[state]: a (match, keywords, newline_types) tuple, made by `_States.__missing__` the
   first time a state is seen. New reference. */
static PyObject *
state_lexer(PyObject *table, PyObject *state)
{
    PyObject *entry = PyDict_GetItemWithError(table, state);
    if (entry != NULL) {
        Py_INCREF(entry);
        return entry;
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    entry = PyObject_GetItem(table, state);
    if (entry != NULL && !(PyTuple_Check(entry) && PyTuple_GET_SIZE(entry) == 3)) {
        Py_DECREF(entry);
        PyErr_SetString(PyExc_TypeError, "a state lexer is a (match, keywords, newline_types) tuple");
        return NULL;
    }
    return entry;
}

static PyObject *
fused_run(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "run() takes 11 arguments");
        return NULL;
    }
    PyObject *text = args[0];
    Py_ssize_t end = PyLong_AsSsize_t(args[1]);
    PyObject *progress = args[2];
    PyObject *table = args[3];
    PyObject *actions = args[4];
    PyObject *token_callbacks = args[5];
    int skip_newlines = PyObject_IsTrue(args[6]);
    PyObject *token_type = args[7];
    PyObject *state_stack = args[8];
    PyObject *value_stack = args[9];
    PyObject *made = args[10] == Py_None ? NULL : args[10];
    if (end == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!PyUnicode_Check(text) || !PyList_Check(progress) || PyList_GET_SIZE(progress) != 4 ||
        !PyDict_Check(table) || !PyDict_Check(actions) || !PyDict_Check(token_callbacks) ||
        !PyType_Check(token_type) || !PyType_IsSubtype((PyTypeObject *)token_type, &PyUnicode_Type) ||
        !PyList_Check(state_stack) || !PyList_Check(value_stack) || skip_newlines < 0 ||
        (made != NULL && !PyList_Check(made))) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "run(): an argument of the wrong type");
        }
        return NULL;
    }
    if (PyList_GET_SIZE(state_stack) == 0) {
        PyErr_SetString(PyExc_ValueError, "run(): the state stack is empty");
        return NULL;
    }
    if (find_offsets((PyTypeObject *)token_type) < 0) {
        return NULL;
    }
    if (end > PyUnicode_GET_LENGTH(text)) {
        end = PyUnicode_GET_LENGTH(text);
    }
    Py_ssize_t pos = PyLong_AsSsize_t(PyList_GET_ITEM(progress, 0));
    Py_ssize_t line = PyLong_AsSsize_t(PyList_GET_ITEM(progress, 1));
    Py_ssize_t line_start = PyLong_AsSsize_t(PyList_GET_ITEM(progress, 2));
    if (PyErr_Occurred()) {
        return NULL;
    }
    PyObject *token = Py_NewRef(PyList_GET_ITEM(progress, 3)); /* the last token made */
    PyObject *state = Py_NewRef(PyList_GET_ITEM(state_stack, PyList_GET_SIZE(state_stack) - 1));
    int has_token_callbacks = PyDict_GET_SIZE(token_callbacks) > 0;
    PyObject *end_object = PyLong_FromSsize_t(end);
    /* The position as an int object: the last token's end, passed on to the next match. */
    PyObject *pos_object = PyLong_FromSsize_t(pos);
    int status = 0;
    int failed = 0;
    if (end_object == NULL || pos_object == NULL) {
        failed = 1;
    }

    while (!failed && pos < end) {
        PyObject *entry = state_lexer(table, state);
        if (entry == NULL) {
            failed = 1;
            break;
        }
        PyObject *match = PyTuple_GET_ITEM(entry, 0);
        PyObject *keywords = PyTuple_GET_ITEM(entry, 1);
        PyObject *newline_types = PyTuple_GET_ITEM(entry, 2);

        PyObject *call_args[3] = {text, pos_object, end_object};
        PyObject *m = PyObject_Vectorcall(match, call_args, 3, NULL);
        if (m == NULL) {
            Py_DECREF(entry);
            failed = 1;
            break;
        }
        if (m == Py_None) {
            Py_DECREF(m);
            Py_DECREF(entry);
            break;
        }
        PyObject *type = PyObject_GetAttr(m, str_lastgroup);
        PyObject *span = NULL;
        if (type != NULL) {
            PyObject *span_args[2] = {m, type};
            span = PyObject_VectorcallMethod(str_span, span_args, 2, NULL);
        }
        Py_DECREF(m);
        if (span == NULL || !PyUnicode_Check(type) || !PyTuple_Check(span) || PyTuple_GET_SIZE(span) != 2) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_TypeError, "a fused pattern matched without a named group");
            }
            Py_XDECREF(type);
            Py_XDECREF(span);
            Py_DECREF(entry);
            failed = 1;
            break;
        }
        PyObject *start_object = PyTuple_GET_ITEM(span, 0);
        PyObject *stop_object = PyTuple_GET_ITEM(span, 1);
        Py_ssize_t start = PyLong_AsSsize_t(start_object);
        Py_ssize_t stop = PyLong_AsSsize_t(stop_object);
        if (skip_newlines && start != pos) {
            Py_ssize_t after = line_start;
            Py_ssize_t newlines = count_newlines(text, pos, start, &after);
            if (newlines) {
                line += newlines;
                line_start = after;
            }
        }
        PyObject *value = PyUnicode_Substring(text, start, stop);
        if (value == NULL) {
            Py_DECREF(span);
            Py_DECREF(type);
            Py_DECREF(entry);
            failed = 1;
            break;
        }
        PyObject *words = PyDict_GetItemWithError(keywords, type); /* borrowed */
        if (words != NULL) {
            PyObject *keyword = PyDict_GetItemWithError(words, value);
            if (keyword != NULL) {
                Py_INCREF(keyword);
                Py_SETREF(type, keyword);
            }
        }
        /* str.__new__(Token, value): Lark's own `Token.__new__` is Python and not needed here */
        PyObject *fresh = NULL;
        if (!PyErr_Occurred()) {  /* the keyword lookup above did not fail */
            PyObject *new_args = PyTuple_Pack(1, value);
            fresh = new_args == NULL ? NULL
                                     : PyUnicode_Type.tp_new((PyTypeObject *)token_type, new_args, NULL);
            Py_XDECREF(new_args);
        }
        if (fresh == NULL) {
            Py_DECREF(span);
            Py_DECREF(value);
            Py_DECREF(type);
            Py_DECREF(entry);
            failed = 1;
            break;
        }
        Py_SETREF(token, fresh);
        int bad = set_slot(token, T_TYPE, type) < 0 || set_slot(token, T_START_POS, start_object) < 0 ||
                  set_slot(token, T_VALUE, value) < 0 || set_slot_long(token, T_LINE, line) < 0 ||
                  set_slot_long(token, T_COLUMN, start - line_start + 1) < 0;
        if (!bad) {
            int holds_newlines = PySet_Contains(newline_types, type);
            if (holds_newlines < 0) {
                bad = 1;
            }
            else if (holds_newlines) {
                Py_ssize_t after = line_start;
                Py_ssize_t newlines = count_newlines(text, start, stop, &after);
                if (newlines) {
                    line += newlines;
                    line_start = after;
                }
            }
        }
        Py_DECREF(value);
        Py_DECREF(entry);
        pos = stop;
        Py_INCREF(stop_object);
        Py_SETREF(pos_object, stop_object);
        Py_DECREF(span);
        if (bad || set_slot_long(token, T_END_LINE, line) < 0 ||
            set_slot_long(token, T_END_COLUMN, stop - line_start + 1) < 0 ||
            set_slot(token, T_END_POS, pos_object) < 0 ||
            (made != NULL && PyList_Append(made, token) < 0)) {
            Py_DECREF(type);
            failed = 1;
            break;
        }

        /* The token's actions: reductions until it is shifted. */
        for (;;) {
            PyObject *row = PyDict_GetItemWithError(actions, state);
            PyObject *action = row == NULL ? NULL : PyDict_GetItemWithError(row, type);
            if (action == NULL) {
                if (PyErr_Occurred()) {
                    failed = 1;
                }
                else {
                    status = 1; /* Lark reports it, from the same stacks */
                }
                break;
            }
            if (PyLong_CheckExact(action)) { /* shift */
                if (PyList_Append(state_stack, action) < 0) {
                    failed = 1;
                    break;
                }
                PyObject *shifted;
                PyObject *callback =
                    has_token_callbacks ? PyDict_GetItemWithError(token_callbacks, type) : NULL;
                if (callback != NULL) {
                    shifted = PyObject_CallOneArg(callback, token);
                }
                else {
                    shifted = PyErr_Occurred() ? NULL : Py_NewRef(token);
                }
                if (push_new(value_stack, shifted) < 0) {
                    failed = 1;
                    break;
                }
                Py_INCREF(action);
                Py_SETREF(state, action);
                break;
            }
            if (PyUnicode_CheckExact(action)) { /* a `?rule` that is its one child */
                /* the top state is replaced by the goto from the one below it */
                Py_ssize_t depth = PyList_GET_SIZE(state_stack);
                if (depth < 2) {
                    PyErr_SetString(PyExc_IndexError, "the state stack ran empty");
                    failed = 1;
                    break;
                }
                PyObject *next = goto_state(actions, PyList_GET_ITEM(state_stack, depth - 2), action);
                if (next == NULL) {
                    failed = 1;
                    break;
                }
                Py_INCREF(next);
                Py_SETREF(((PyListObject *)state_stack)->ob_item[depth - 1], next);
                Py_INCREF(next);
                Py_SETREF(state, next);
                continue;
            }
            /* a reduction: (size, origin, callback) */
            if (!PyTuple_CheckExact(action) || PyTuple_GET_SIZE(action) != 3) {
                PyErr_SetString(PyExc_TypeError, "a parse action is a state, a rule name or a reduction");
                failed = 1;
                break;
            }
            Py_ssize_t size = PyLong_AsSsize_t(PyTuple_GET_ITEM(action, 0));
            PyObject *origin = PyTuple_GET_ITEM(action, 1);
            PyObject *callback = PyTuple_GET_ITEM(action, 2);
            Py_ssize_t depth = PyList_GET_SIZE(state_stack);
            Py_ssize_t values = PyList_GET_SIZE(value_stack);
            if (size < 0 || size >= depth || size > values) {
                if (!PyErr_Occurred()) {
                    PyErr_SetString(PyExc_IndexError, "a reduction larger than the stacks");
                }
                failed = 1;
                break;
            }
            PyObject *children = PyList_GetSlice(value_stack, values - size, values);
            if (children == NULL || PyList_SetSlice(state_stack, depth - size, depth, NULL) < 0 ||
                PyList_SetSlice(value_stack, values - size, values, NULL) < 0) {
                Py_XDECREF(children);
                failed = 1;
                break;
            }
            PyObject *next =
                goto_state(actions, PyList_GET_ITEM(state_stack, depth - size - 1), origin);
            if (next == NULL || PyList_Append(state_stack, next) < 0) {
                Py_DECREF(children);
                failed = 1;
                break;
            }
            Py_INCREF(next);
            Py_SETREF(state, next);
            PyObject *reduced = PyObject_CallOneArg(callback, children);
            Py_DECREF(children);
            if (push_new(value_stack, reduced) < 0) {
                failed = 1;
                break;
            }
        }
        Py_DECREF(type);
        if (status) {
            break;
        }
    }

    Py_XDECREF(end_object);
    Py_XDECREF(pos_object);
    Py_DECREF(state);
    /* Where Lark's lexer would be, also after an exception. */
    PyObject *error_type, *error_value, *error_traceback;
    PyErr_Fetch(&error_type, &error_value, &error_traceback);
    Py_ssize_t numbers[3] = {pos, line, line_start};
    int written = 1;
    for (int i = 0; i < 3; i++) {
        PyObject *number = PyLong_FromSsize_t(numbers[i]);
        if (number == NULL || PyList_SetItem(progress, i, number) < 0) { /* steals */
            written = 0;
            break;
        }
    }
    if (PyList_SetItem(progress, 3, token) < 0) { /* steals */
        written = 0;
    }
    if (error_type != NULL) {
        if (!written) {
            PyErr_Clear();
        }
        PyErr_Restore(error_type, error_value, error_traceback);
        return NULL;
    }
    if (!written) {
        return NULL;
    }
    return PyLong_FromLong(status);
}

static PyMethodDef methods[] = {
    {"run", (PyCFunction)(void (*)(void))fused_run, METH_FASTCALL,
     "The fused lexer and LALR loop of dsl.lalr.FusedParser; see the module's comment."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "dsl._fused", "The fused lexer and LALR loop of dsl.lalr, in C.", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__fused(void)
{
    for (int i = 0; i < T_COUNT; i++) {
        slot_strings[i] = PyUnicode_InternFromString(slot_names[i]);
        if (slot_strings[i] == NULL) {
            return NULL;
        }
    }
    str_lastgroup = PyUnicode_InternFromString("lastgroup");
    str_span = PyUnicode_InternFromString("span");
    if (str_lastgroup == NULL || str_span == NULL) {
        return NULL;
    }
    return PyModule_Create(&module);
}
