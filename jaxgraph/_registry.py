"""Name registries for the serializable kinds (activations, initializers, regularizers,
constraints): one implementation of Keras's `get` / `serialize` / `register` rules, so
a config written by one kind's `serialize` is read back by the same rules everywhere."""

from __future__ import annotations


class Registry:
    """Names -> classes or functions of one kind, with Keras's identifier rules."""

    def __init__(self, kind: str, module: str):
        self.kind = kind  # "activation", ...: the word the error messages use
        self.module = module  # "jaxgraph.activations": where users call register()
        self.objects: dict = {}
        self.builtin: set = set()

    def register(self, name, obj=None):
        """Make `get(name)` and configs naming `name` resolve to `obj` (usable as decorator)."""
        if obj is None:
            return lambda o: self.register(name, o)
        if not isinstance(name, str) or not name:
            raise TypeError(f"register needs a non-empty string name, got {name!r}")
        if not callable(obj):
            raise TypeError(f"register({name!r}, ...) needs a class or callable, got {obj!r}")
        if name in self.builtin and self.objects[name] is not obj:
            raise ValueError(f"{name!r} is a built-in {self.kind} name; pick another")
        self.objects[name] = obj
        return obj

    def add_builtin(self, obj, *names) -> None:
        for name in names or (obj.__name__,):
            self.register(name, obj)
            self.builtin.add(name)

    def lookup(self, name):
        if name not in self.objects:
            raise ValueError(f"Unknown {self.kind} {name!r}. Accepted: "
                             f"{', '.join(sorted(self.objects))}")
        return self.objects[name]

    def get(self, identifier):
        """Resolve a name, a {'class_name', 'config'} dict, a class (instantiated) or a
        callable (as is). None is the caller's to interpret."""
        if isinstance(identifier, str):
            identifier = self.lookup(identifier)
        elif isinstance(identifier, dict):
            if identifier.get("class_name") is None:
                raise ValueError(f"{self.kind.capitalize()} config needs a 'class_name' key, "
                                 f"got {identifier!r}")
            obj = self.lookup(identifier["class_name"])
            config = identifier.get("config") or {}
            return obj.from_config(config) if isinstance(obj, type) else obj
        if isinstance(identifier, type):
            return identifier()
        if callable(identifier):
            return identifier
        raise ValueError(f"Could not interpret {self.kind} identifier {identifier!r}")

    def name_of(self, obj) -> str:
        own = getattr(obj, "__name__", None)
        if self.objects.get(own) is obj:
            return own
        for name, candidate in self.objects.items():
            if candidate is obj:
                return name
        raise ValueError(f"{self.kind.capitalize()} {obj!r} is not registered; call "
                         f"{self.module}.register(name, obj) so it can be serialized")

    def serialize(self, obj):
        """A registered name for a function or class, or {'class_name', 'config'} for a
        configured object; `get` turns either back into an equal object."""
        if obj is None:
            return None
        if isinstance(obj, type) or not hasattr(obj, "get_config"):
            return self.name_of(obj)
        return {"class_name": self.name_of(type(obj)), "config": obj.get_config()}


class Configurable:
    """Keras's config protocol for the registered kinds' base classes: a constructor that
    takes `get_config()`'s keys back, and a repr that shows them."""

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
